"""GroupedConv2d: an nn.Conv2d whose narrow groups are merged in CPU training, same results."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet.models.backbones.grouped_conv import GroupedConv2d, merge_factor
from mmdet.registry import MODELS

from backbone_checks import per_group_conv


class Conv2dGroups(TorchFunctionMode):
    """Records the ``groups`` and weight shape of every ``F.conv2d`` call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            groups = args[6] if len(args) > 6 else kwargs.get('groups', 1)
            self.calls.append((groups, tuple(args[1].shape)))
        return func(*args, **kwargs)


def test_merge_factor_widens_narrow_groups_to_8_channels():
    assert merge_factor(256, 256, 64) == 2       # 4 channels per group -> 8
    assert merge_factor(128, 128, 64) == 4       # 2 -> 8
    assert merge_factor(512, 512, 64) == 1       # 8 channels already
    assert merge_factor(1024, 1024, 32) == 1     # 32
    assert merge_factor(64, 64, 64) == 1         # depthwise: oneDNN has its own kernels
    assert merge_factor(64, 64, 1) == 1          # not grouped
    assert merge_factor(12, 12, 3) == 1          # 3 groups of 4 cannot be paired


@pytest.mark.parametrize('groups,stride,bias', [(8, 1, False), (8, 2, True), (16, 1, False)])
def test_output_and_gradients_equal_per_group_convs(groups, stride, bias):
    conv = GroupedConv2d(32, 32, 3, stride=stride, padding=1, groups=groups, bias=bias)
    assert conv.merge == 8 // (32 // groups)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 9, 11, generator=gen, requires_grad=True)
    expected = per_group_conv(x, conv.weight, groups, stride)
    if bias:
        expected = expected + conv.bias.view(1, -1, 1, 1)
    params = (x, conv.weight) + ((conv.bias, ) if bias else ())
    expected_grads = torch.autograd.grad(expected.square().sum(), params)
    with Conv2dGroups() as mode:
        out = conv(x)
    assert mode.calls == [(groups // conv.merge, (32, 32 // groups * conv.merge, 3, 3))]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), params)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_plain_conv_without_gradients():
    conv = GroupedConv2d(32, 32, 3, padding=1, groups=8, bias=False)
    x = torch.randn(1, 32, 8, 8)
    with Conv2dGroups() as mode, torch.no_grad():
        out = conv(x)
    assert mode.calls == [(8, (32, 4, 3, 3))]
    torch.testing.assert_close(out, per_group_conv(x, conv.weight, 8, 1))
    # the state dict and attributes are nn.Conv2d's
    plain = nn.Conv2d(32, 32, 3, padding=1, groups=8, bias=False)
    plain.load_state_dict(conv.state_dict())
    assert conv.groups == 8 and conv.weight.shape == (32, 4, 3, 3)


def test_iresgroupfix_trains_with_merged_groups_and_infers_with_plain_ones():
    model = MODELS.build(dict(type='iResGroupFix', depth=50, base_channels=16))
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped and all(type(m) is GroupedConv2d for m in grouped)
    x = torch.randn(1, 3, 64, 64)
    with Conv2dGroups() as mode:
        model.train()(x)
    # widths 64..512 in 64 groups: 1, 2, 4, 8 channels per group; 2 and 4 are merged to 8 wide
    # (64 groups -> 16 and 32), depthwise (1) and 8 are left alone
    assert {g for g, _ in mode.calls if g > 1} == {64, 32, 16}
    with Conv2dGroups() as mode, torch.no_grad():
        model.eval()(x)
    assert {g for g, _ in mode.calls if g > 1} == {64}
