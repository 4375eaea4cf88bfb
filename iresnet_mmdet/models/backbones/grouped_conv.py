"""A grouped 2D conv that trains faster on CPUs when its groups are narrow.

oneDNN, PyTorch's CPU convolution library, computes the backward pass of a grouped 3x3 conv with 4
channels per group several times slower than the forward: in iResGroupFix-50 (64 groups) the
stage-1 convs take 4-9x their forward time in backward. The same conv written with half as many
groups of 8 channels, each holding two original groups on the diagonal of its weight (the other
blocks zero), gives the same output and the same gradients, and its forward + backward is 2-3x
faster although it multiplies twice as many numbers (``benchmarks/grouped_conv.py``,
docs/detector_speed.md). So :class:`GroupedConv2d` merges groups that way while it trains on a CPU
and is an ordinary ``nn.Conv2d`` everywhere else: inference, export, fused conv + BN, GPUs.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS

#: Groups narrower than this are merged (in training on a CPU) until they are this wide.
MERGED_GROUP_CHANNELS = 8


def block_diagonal(weight: torch.Tensor, groups: int, merge: int) -> torch.Tensor:
    """The weight of a conv with ``groups // merge`` groups equal to ``weight``'s conv with
    ``groups`` groups: each merged group holds ``merge`` original groups on its block diagonal.

    Differentiable: the gradient of each original group's weight is its block's gradient.
    """
    out_channels, group_in = weight.shape[:2]
    kernel = weight.shape[2:]
    blocks = weight.reshape(groups // merge, merge, out_channels // groups, group_in, *kernel)
    eye = torch.eye(merge, dtype=weight.dtype, device=weight.device)
    merged = torch.einsum('amoc...,mn->amonc...', blocks, eye)
    return merged.reshape(out_channels, merge * group_in, *kernel)


def merge_factor(in_channels: int, out_channels: int, groups: int) -> int:
    """How many neighbouring groups to compute as one (1: none) so that merged groups are
    :data:`MERGED_GROUP_CHANNELS` wide; 1 for plain and depthwise-like convs."""
    group_in = in_channels // groups
    if groups == 1 or group_in < 2 or group_in >= MERGED_GROUP_CHANNELS:
        return 1
    merge = MERGED_GROUP_CHANNELS // group_in
    return merge if groups % merge == 0 and out_channels % groups == 0 else 1


@MODELS.register_module('GroupedConv2d')
class GroupedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose narrow groups are merged into wider block-diagonal ones in training on
    a CPU (same output and gradients, faster there); an ordinary conv otherwise.

    Parameters, state-dict keys and the module's attributes (``groups``, ``weight``, ...) are
    those of ``nn.Conv2d`` with the same arguments. Merging is used when gradients are being
    recorded, the input is on a CPU and the padding mode is ``'zeros'``.

    Args:
        *args, **kwargs: those of ``nn.Conv2d``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.merge = merge_factor(self.in_channels, self.out_channels, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.merge == 1 or not torch.is_grad_enabled() or x.device.type != 'cpu'
                or self.padding_mode != 'zeros'):
            return super().forward(x)
        weight = block_diagonal(self.weight, self.groups, self.merge)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups // self.merge)
