"""The paper's CIFAR (164 to 3002 layers) and video (3D) networks: sizes, structure, with_cp.

Parameter and FLOP counts are taken on the meta device: the modules and the forward's shapes are
exact, but nothing is allocated or computed, so even the 3002-layer nets and the 16x224x224 clips
are cheap to count.
"""
import functools

import pytest
import torch
import torch.nn as nn

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet import paper
from backbone_checks import assert_checkpointing_works
from iresnet_mmdet.analysis.counting import count_ops
from iresnet_mmdet.models import build_classifier
from iresnet_mmdet.models.classifier import parse_arch
from mmdet.registry import MODELS

CIFAR_FAMILIES = ('cifar_resnet', 'cifar_iresnet')
CIFAR_DEPTHS = (164, 1001, 2000, 3002)
DATASET = {10: 'cifar10', 100: 'cifar100'}
VIDEO = {400: 'kinetics400', 174: 'ssv2'}
NAME = {'cifar_resnet': 'ResNet', 'cifar_iresnet': 'iResNet', 'resnet3d50': 'ResNet3D-50',
        'iresnet3d50': 'iResNet3D-50'}
CLIP = (3, 16, 224, 224)


@functools.lru_cache(maxsize=None)
def meta_classifier(arch, num_classes):
    with torch.device('meta'):
        return build_classifier(arch, num_classes=num_classes).eval()


def params_m(model):
    return sum(p.numel() for p in model.parameters()) / 1e6


def gflops(model, input_shape, convention):
    x = torch.empty(1, *input_shape, device='meta')
    return count_ops(model, model, x, (convention, ))[convention]['total'] / 1e9


@pytest.mark.parametrize('family', CIFAR_FAMILIES)
@pytest.mark.parametrize('depth', CIFAR_DEPTHS)
@pytest.mark.parametrize('num_classes', [10, 100])
def test_cifar_parameter_counts_equal_paper(family, depth, num_classes):
    expected = paper.CIFAR[DATASET[num_classes]][f'{NAME[family]}-{depth}'].params
    assert paper.matches(params_m(meta_classifier(f'{family}{depth}', num_classes)), expected)


@pytest.mark.parametrize('family', CIFAR_FAMILIES)
@pytest.mark.parametrize('depth', CIFAR_DEPTHS)
def test_cifar_gflops_equal_paper(family, depth):
    model = meta_classifier(f'{family}{depth}', 10)
    expected = paper.CIFAR['cifar10'][f'{NAME[family]}-{depth}'].gflops
    assert paper.matches(gflops(model, (3, 32, 32), 'paper-cifar'), expected)


def test_cifar_convention_counts_every_relu_call():
    """The CIFAR table counts each ReLU application; the ImageNet rule only a module's last."""
    model = meta_classifier('cifar_resnet164', 10)
    x = torch.empty(1, 3, 32, 32, device='meta')
    calls = []  # (module, elements) of every ReLU application
    hooks = [m.register_forward_hook(lambda m, a, out: calls.append((m, a[0].numel())))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    counts = count_ops(model, model, x, ('paper', 'paper-cifar'))
    relu_last, relu_all = (counts[c]['by_type']['ReLU'] for c in ('paper', 'paper-cifar'))
    assert relu_all == sum(n for _, n in calls)
    assert relu_last == sum(dict(calls).values())  # dict keeps each module's last call
    # Post-activation bottlenecks apply their ReLU three times, the last time on the 4x output.
    assert len(calls) == 1 + 3 * 54 and 1.5 < relu_all / relu_last < 1.6
    others = {c: counts[c]['total'] - counts[c]['by_type']['ReLU'] for c in counts if c[0] == 'p'}
    assert others['paper'] == others['paper-cifar']


@pytest.mark.parametrize('arch', ['resnet3d50', 'iresnet3d50'])
@pytest.mark.parametrize('num_classes', sorted(VIDEO))
def test_video_parameter_counts_equal_paper(arch, num_classes):
    expected = paper.VIDEO[VIDEO[num_classes]][NAME[arch]].params
    assert paper.matches(params_m(meta_classifier(arch, num_classes)), expected)


@pytest.mark.parametrize('arch', ['resnet3d50', 'iresnet3d50'])
def test_video_gflops_equal_paper(arch):
    expected = paper.VIDEO['kinetics400'][NAME[arch]].gflops
    assert paper.matches(gflops(meta_classifier(arch, 400), CLIP, 'paper'), expected)


# --------------------------------------------------------------------------------------------
# Structure and shapes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('variant', ['ResNetCifar', 'iResNetCifar'])
def test_cifar_backbone_and_classifier_shapes(variant):
    backbone = MODELS.build(dict(type=variant, depth=164)).eval()
    assert backbone.out_channels == (64, 128, 256)
    assert backbone.stage_blocks == (18, 18, 18) and not hasattr(backbone, 'layer4')
    assert tuple(backbone.conv1.kernel_size) == (3, 3) and backbone.conv1.out_channels == 16
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = backbone(x)
        logits = build_classifier(f'cifar_{variant[:-5].lower()}164', num_classes=100).eval()(x)
    assert [tuple(o.shape) for o in outs] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8)]
    assert tuple(logits.shape) == (2, 100)


def test_cifar_3002_layers_split_333_334_333():
    model = meta_classifier('cifar_iresnet3002', 10)
    assert model.stage_blocks == (333, 334, 333)
    # The depth counts the stem conv, the branch convs and the fc, not the projection shortcuts.
    convs = [name for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and 'downsample' not in name]
    assert len(convs) + 1 == 3002


def test_cifar_shortcuts():
    """Stage 1 (stride 1) keeps a plain projection; iResNet's stages 2-3 get the max-pool."""
    base = MODELS.build(dict(type='ResNetCifar', depth=164))
    ires = MODELS.build(dict(type='iResNetCifar', depth=164))
    for model in (base, ires):
        assert not model.stem_pool
        first = model.layer1[0].downsample
        assert [type(m) for m in first] == [nn.Conv2d, nn.BatchNorm2d]
        assert first[0].stride == (1, 1)
    assert base.layer2[0].downsample[0].stride == (2, 2)
    pool = ires.layer2[0].downsample[0]
    assert isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride) == (3, 2)
    assert ires.layer2[0].conv2.stride == (2, 2) and ires.layer2[0].downsample[1].stride == (1, 1)


@pytest.mark.parametrize('arch', ['resnet3d50', 'iresnet3d50'])
def test_video_stage_shapes_at_paper_clip(arch):
    model = meta_classifier(arch, 400)
    sizes = []
    hooks = [getattr(model, f'layer{i}').register_forward_hook(
        lambda m, a, out: sizes.append(tuple(out.shape[1:]))) for i in range(1, 5)]
    with torch.no_grad():
        logits = model(torch.empty(2, *CLIP, device='meta'))
    for h in hooks:
        h.remove()
    assert tuple(logits.shape) == (2, 400)
    assert sizes == [(256, 16, 56, 56), (512, 16, 28, 28), (1024, 8, 14, 14), (2048, 4, 7, 7)]


def test_video_modules():
    base = MODELS.build(dict(type='ResNet3D', depth=50))
    ires = MODELS.build(dict(type='iResNet3D', depth=50))
    for model in (base, ires):
        assert model.conv1.kernel_size == (5, 7, 7) and model.conv1.stride == (1, 2, 2)
        assert isinstance(model.bn1, nn.BatchNorm3d)
        assert model.layer3[1].conv2.kernel_size == (3, 3, 3)
        assert model.layer3[1].conv1.kernel_size == (1, 1, 1)
        assert model.layer3[0].conv2.stride == (2, 2, 2)
    assert (base.maxpool.kernel_size, base.maxpool.stride) == ((1, 3, 3), (1, 2, 2))
    assert not hasattr(ires, 'maxpool') and ires.layer1[0].conv2.stride == (1, 2, 2)
    pools = [getattr(ires, f'layer{i}')[0].downsample[0] for i in range(1, 5)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [
        ((1, 3, 3), (1, 2, 2), (0, 1, 1)), ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        ((3, 3, 3), (2, 2, 2), (1, 1, 1)), ((3, 3, 3), (2, 2, 2), (1, 1, 1))]
    # Same parameters, same state-dict keys but the shortcut indices (pool first in iResNet).
    assert round(params_m(base), 2) == round(params_m(ires), 2) == 46.18


@pytest.mark.parametrize('variant', ['ResNet3D', 'iResNet3D'])
def test_video_forward_on_a_small_clip(variant):
    model = MODELS.build(dict(type=variant, depth=50, base_channels=8)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 8, 64, 64))
    assert [tuple(o.shape) for o in outs] == [
        (1, 32, 8, 16, 16), (1, 64, 8, 8, 8), (1, 128, 4, 4, 4), (1, 256, 2, 2, 2)]
    assert all(torch.isfinite(o).all() for o in outs)


def test_engine_switches_compose_with_settings():
    """Any layout/shortcut/block goes with any setting, e.g. a pre-activation 3D basic net."""
    model = MODELS.build(dict(type='iResNet3D', depth=50, layout='preact', block='basic',
                              base_channels=8, num_stages=2, out_indices=(1, ))).eval()
    assert model.layer1[0].conv1.kernel_size == (3, 3, 3)
    with torch.no_grad():
        (out, ) = model(torch.randn(1, 3, 4, 32, 32))
    assert tuple(out.shape) == (1, 16, 4, 4, 4)


# --------------------------------------------------------------------------------------------
# Activation checkpointing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('variant, cp_blocks', [('iResNetCifar', 1), ('iResNetCifar', 5),
                                                ('ResNetCifar', 1)])
def test_with_cp_recomputes_blocks_saves_memory_and_keeps_numbers(variant, cp_blocks):
    assert_checkpointing_works(
        dict(type=variant, depth=164, norm_eval=False), (2, 3, 32, 32), cp_blocks=cp_blocks)


def test_cp_blocks_checkpoints_runs_of_blocks():
    model = MODELS.build(dict(type='iResNetCifar', depth=164, with_cp=True, cp_blocks=5))
    assert not any(block.with_cp for block in model.layer1)  # the runs are checkpointed instead
    with pytest.raises(ValueError, match='cp_blocks must be an int >= 1'):
        MODELS.build(dict(type='iResNetCifar', depth=164, with_cp=True, cp_blocks=0))


# --------------------------------------------------------------------------------------------
# Names and errors
# --------------------------------------------------------------------------------------------
def test_arch_names():
    assert parse_arch('cifar_iresnet3002') == ('iResNetCifar', 3002)
    assert parse_arch('cifar_resnet164') == ('ResNetCifar', 164)
    assert parse_arch('iresnet3d50') == ('iResNet3D', 50)
    assert parse_arch('resnet3d50') == ('ResNet3D', 50)
    assert parse_arch('iresnet302') == ('iResNet', 302)
    assert parse_arch('resnet50') == ('ResNet', 50)
    assert parse_arch('resnet200') == ('ResidualNetwork', 200)  # mmdet's ResNet stops at 152
    assert meta_classifier('cifar_iresnet164', None).fc.out_features == 10
    assert meta_classifier('iresnet3d50', None).fc.out_features == 400
    with pytest.raises(KeyError, match=r'invalid depth 110 .*\[164, 1001, 2000, 3002\]'):
        build_classifier('cifar_iresnet110')


def test_bad_setting_arguments_are_clear():
    with pytest.raises(ValueError, match='the stem has no max-pool'):
        MODELS.build(dict(type='ResNetCifar', depth=164, stem_pool=True))
    with pytest.raises(ValueError, match='has 2 values but the network is 3D'):
        MODELS.build(dict(type='ResNet3D', depth=50, strides=(1, (2, 2), 2, 2)))
    with pytest.raises(ValueError, match='num_stages must be between 1 and 3'):
        MODELS.build(dict(type='iResNetCifar', depth=164, num_stages=4))
    with pytest.raises(ValueError, match=r"unknown stem field\(s\) \['pool'\]"):
        MODELS.build(dict(type='ResNetCifar', depth=164, stem=dict(pool=3)))
    with pytest.raises(ValueError, match='unknown dims 1'):
        MODELS.build(dict(type='iResNet', depth=50, dims=1))


def test_complexity_tool_rows_for_cifar_and_video():
    from iresnet_mmdet.analysis import complexity_rows, markdown_table
    rows = complexity_rows(['cifar_iresnet164'], num_classes=100)
    rows += complexity_rows(['iresnet3d50'], num_classes=174)
    cifar, video = rows
    assert (cifar['task'], cifar['name'], cifar['input_shape']) == ('cifar100', 'iResNet-164',
                                                                    (3, 32, 32))
    published = paper.CIFAR['cifar100']['iResNet-164']
    assert cifar['ref_convention'] == 'paper-cifar' and cifar['ref_params_m'] == published.params
    assert cifar['ref_gflops'] == published.gflops
    assert paper.matches(cifar['paper_cifar_flops'] / 1e9, published.gflops)
    assert (video['task'], video['name'], video['input_shape']) == ('ssv2', 'iResNet3D-50',
                                                                    (3, 16, 224, 224))
    ssv2 = paper.VIDEO['ssv2']['iResNet3D-50']
    assert video['ref_params_m'] == ssv2.params
    assert paper.matches(video['params'] / 1e6, ssv2.params)
    table = markdown_table(rows)
    assert '| GFLOPs (paper CIFAR counter) |' in table
    # ours: params, GFLOPs (paper counter, paper CIFAR counter), GMACs; then the paper's cells
    assert (f'| CIFAR-100 iResNet-164 | 32x32 | 1.73 | 0.26 | 0.26 | 0.25 | {published.params} | '
            f'{published.gflops} |') in table
    assert '| SSv2 iResNet3D-50 | 16x224x224 | 46.54 | 93.93 |' in table
