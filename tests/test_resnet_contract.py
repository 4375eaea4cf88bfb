"""mmdet's ``ResNet`` contract on every backbone of the plugin.

What mmdet's own ``tests/test_models/test_backbones/test_resnet.py`` checks of its ``ResNet``
(structure, style, frozen stages, norm_eval, with_cp, GN, DCN, plugins, out_indices, output
shapes, deep stem and average-pool downsampling, the deprecated ``pretrained``), asserted here for
each of our backbone types. Expected channels, strides and module layouts are written out from the
paper's block definitions or taken from mmdet's own ``ResNet`` / ``ResNetV1d``, never from our code.
"""
import inspect
import warnings

import pytest
import torch
import torch.nn as nn
from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack
from mmdet.models.backbones import ResNet, ResNetV1d
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import iresnet_mmdet  # noqa: F401  (registers the backbones)
from iresnet_mmdet.models.backbones import BackboneConfigError, ResidualBlock

BOTTLENECK_TYPES = ('PreActResNet', 'ResStage', 'iResNet')
GROUP_TYPES = ('ResGroup', 'ResGroupFix', 'iResGroup', 'iResGroupFix')
TYPES = BOTTLENECK_TYPES + GROUP_TYPES
#: The types whose stage-1 downsampling is the stem's max-pool (conv shortcut) instead of the
#: improved shortcut's max-pool.
CONV_SHORTCUT_TYPES = ('PreActResNet', 'ResStage', 'ResGroup', 'ResGroupFix')
BASE = 16  # narrow networks keep the tests fast; widths scale with base_channels


def out_channels(kind, base=BASE):
    """Stage outputs from the block definitions: bottleneck 4 x planes, ResGroup 2 x planes."""
    factor = {'basic': 1, 'bottleneck': 4, 'group': 2}[kind]
    return [base * 2**i * factor for i in range(4)]


def kind_of(backbone_type):
    return 'group' if backbone_type in GROUP_TYPES else 'bottleneck'


def build(backbone_type, depth=50, **kwargs):
    kwargs.setdefault('base_channels', BASE)
    return MODELS.build(dict(type=backbone_type, depth=depth, **kwargs))


def blocks(model):
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


def trainable(module):
    return [p.requires_grad for p in module.parameters()]


@pytest.mark.parametrize('backbone_type', TYPES)
def test_takes_every_argument_of_mmdet_resnet_with_its_defaults(backbone_type):
    ours = inspect.signature(MODELS.get(backbone_type).__init__).parameters
    theirs = inspect.signature(ResNet.__init__).parameters
    missing = sorted(set(theirs) - set(ours))
    assert not missing
    # documented differences: every stage is returned, and no zero-init (the authors' default)
    # ``None`` defaults: the preset's (strides (2, 2, 2, 2) behind iRes* stems, widths, stages)
    different = {'out_indices', 'zero_init_residual', 'strides', 'num_stages', 'base_channels'}
    for name in set(theirs) - different:
        assert ours[name].default == theirs[name].default, name


@pytest.mark.parametrize('backbone_type', TYPES)
def test_output_channels_and_shapes(backbone_type):
    model = build(backbone_type).eval()
    outs = model(torch.randn(2, 3, 64, 64))
    expected = out_channels(kind_of(backbone_type))
    sizes = [64 // 2**(i + 2) for i in range(4)]  # output strides 4, 8, 16, 32
    assert [tuple(o.shape) for o in outs] == [(2, c, s, s) for c, s in zip(expected, sizes)]
    assert list(model.out_channels) == expected
    outs = build(backbone_type, out_indices=(1, 3)).eval()(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [expected[1], expected[3]]


@pytest.mark.parametrize('backbone_type', ('PreActResNet', 'ResStage', 'iResNet'))
def test_basic_block_depths(backbone_type):
    model = build(backbone_type, depth=18).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == out_channels('basic')
    assert all(b.num_convs == 2 for b in blocks(model))
    assert [len(getattr(model, f'layer{i}')) for i in range(1, 5)] == [2, 2, 2, 2]


@pytest.mark.parametrize('backbone_type', ('ResStage', 'iResNet', 'iResGroup'))
def test_style_places_the_stride(backbone_type):
    pytorch = build(backbone_type, style='pytorch')
    caffe = build(backbone_type, style='caffe')
    for i in range(2, 5):  # stages 2-4 downsample in their first block
        first_p, first_c = getattr(pytorch, f'layer{i}')[0], getattr(caffe, f'layer{i}')[0]
        assert (first_p.conv1.stride, first_p.conv2.stride) == ((1, 1), (2, 2))
        assert (first_c.conv1.stride, first_c.conv2.stride) == ((2, 2), (1, 1))
    x = torch.randn(1, 3, 64, 64)
    assert [o.shape for o in pytorch.eval()(x)] == [o.shape for o in caffe.eval()(x)]
    with pytest.raises(BackboneConfigError, match="style 'tensorflow'.*pytorch.*caffe"):
        build(backbone_type, style='tensorflow')


def test_basic_block_strides_its_first_conv_in_both_styles():
    for style in ('pytorch', 'caffe'):
        block = build('iResNet', depth=18, style=style).layer2[0]
        assert (block.conv1.stride, block.conv2.stride) == ((2, 2), (1, 1))


@pytest.mark.parametrize('backbone_type', TYPES)
def test_frozen_stages(backbone_type):
    model = build(backbone_type, frozen_stages=1, norm_eval=False)
    model.train()
    assert not model.norm1.training
    assert not any(trainable(model.conv1)) and not any(trainable(model.norm1))
    for m in model.layer1.modules():
        assert not (isinstance(m, _BatchNorm) and m.training)
    assert not any(trainable(model.layer1))
    assert all(trainable(model.layer2))
    assert all(m.training for m in model.layer2.modules() if isinstance(m, _BatchNorm))


def test_frozen_stages_with_deep_stem():
    model = build('ResStage', deep_stem=True, frozen_stages=0, norm_eval=False)
    model.train()
    assert not any(trainable(model.stem))
    assert not any(m.training for m in model.stem.modules() if isinstance(m, _BatchNorm))
    assert all(trainable(model.layer1))


@pytest.mark.parametrize('backbone_type', TYPES)
def test_norm_eval(backbone_type):
    model = build(backbone_type, norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and not any(m.training for m in norms)
    model = build(backbone_type, norm_eval=False).train()
    assert all(m.training for m in model.modules() if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('backbone_type', ('ResStage', 'iResNet', 'iResGroup', 'PreActResNet'))
def test_with_cp_recomputes_every_block(backbone_type):
    model = build(backbone_type, with_cp=True).train()
    assert all(b.with_cp for b in blocks(model))
    calls = []
    for b in blocks(model):
        b.conv1.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    out = model(x)
    forward_calls = len(calls)
    assert forward_calls == len(blocks(model))
    sum(o.sum() for o in out).backward()
    assert len(calls) == 2 * forward_calls  # each block's forward ran again in the backward


@pytest.mark.parametrize('backbone_type', TYPES)
def test_group_norm(backbone_type):
    model = build(backbone_type, norm_cfg=dict(type='GN', num_groups=4, requires_grad=True))
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) > 0
    outs = model.train()(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == out_channels(kind_of(backbone_type))


@pytest.mark.parametrize('backbone_type', TYPES)
@pytest.mark.parametrize('dcn_type, dcn_class', [('DCN', DeformConv2dPack),
                                                 ('DCNv2', ModulatedDeformConv2dPack)])
def test_dcn_replaces_the_3x3_of_the_chosen_stages(backbone_type, dcn_type, dcn_class):
    dcn = dict(type=dcn_type, deform_groups=2, fallback_on_stride=False)
    plain = build(backbone_type)
    model = build(backbone_type, dcn=dcn, stage_with_dcn=(False, True, False, True))
    for i, with_dcn in enumerate((False, True, False, True), start=1):
        for b_plain, b in zip(getattr(plain, f'layer{i}'), getattr(model, f'layer{i}')):
            assert isinstance(b.conv2, dcn_class) == with_dcn
            assert b.conv2.groups == b_plain.conv2.groups  # ResGroup's groups are kept
            assert b.conv2.stride == b_plain.conv2.stride
            if with_dcn:
                assert b.conv2.deform_groups == 2
            assert not isinstance(b.conv1, dcn_class) and not isinstance(b.conv3, dcn_class)


@pytest.mark.parametrize('backbone_type, dcn_type', [('iResNet', 'DCNv2'), ('iResGroup', 'DCN')])
def test_dcn_backbone_trains(backbone_type, dcn_type):
    model = build(backbone_type, base_channels=8, dcn=dict(type=dcn_type, deform_groups=1),
                  stage_with_dcn=(False, True, True, True))
    # mmcv's deformable convs need inputs of at least the kernel size: C5 is 4x4 here
    outs = model.train()(torch.randn(1, 3, 128, 128))
    sum(o.sum() for o in outs).backward()
    assert [o.shape[1] for o in outs] == out_channels(kind_of(backbone_type), base=8)
    offset_grads = [m.conv_offset.weight.grad for m in model.modules() if hasattr(m, 'conv_offset')]
    assert offset_grads and all(g is not None for g in offset_grads)


def test_dcn_fallback_on_stride_keeps_the_strided_conv_plain():
    dcn = dict(type='DCN', deform_groups=1, fallback_on_stride=True)
    model = build('iResNet', dcn=dcn, stage_with_dcn=(False, True, True, True))
    for i in (2, 3, 4):
        layer = getattr(model, f'layer{i}')
        assert type(layer[0].conv2) is nn.Conv2d and layer[0].conv2.stride == (2, 2)
        assert all(isinstance(b.conv2, DeformConv2dPack) for b in layer[1:])


def test_dcn_offsets_start_at_zero():
    model = build('iResNet', dcn=dict(type='DCN', deform_groups=1),
                  stage_with_dcn=(False, True, True, True))
    model.init_weights()
    offsets = [m.conv_offset for m in model.modules() if isinstance(m, DeformConv2dPack)]
    assert offsets and all(float(o.weight.abs().sum()) == 0 for o in offsets)


def test_dcn_bad_input():
    dcn = dict(type='DCN', deform_groups=1)
    with pytest.raises(BackboneConfigError, match='one bool per stage'):
        build('iResNet', dcn=dcn, stage_with_dcn=(False, True, True))
    with pytest.raises(BackboneConfigError, match='basic blocks'):
        build('iResNet', depth=18, dcn=dcn, stage_with_dcn=(False, True, True, True))
    with pytest.raises(BackboneConfigError, match='conv_cfg'):
        build('iResNet', dcn=dcn, conv_cfg=dict(type='Conv2d'),
              stage_with_dcn=(False, True, True, True))


def context_block(**kwargs):
    return dict(type='ContextBlock', ratio=1. / 4, **kwargs)


@pytest.mark.parametrize('backbone_type', TYPES)
def test_plugins_in_chosen_stages_and_positions(backbone_type):
    plugins = [
        dict(cfg=context_block(), position='after_conv3', stages=(False, True, True, True)),
        dict(cfg=dict(type='GeneralizedAttention', spatial_range=-1, num_heads=8,
                      attention_type='0010', kv_stride=2),
             position='after_conv2', stages=(False, False, True, True)),
        dict(cfg=dict(type='NonLocal2d', reduction=2), position='after_conv1',
             stages=(False, False, False, True)),
    ]
    model = build(backbone_type, plugins=plugins)
    plain = build(backbone_type)
    for i in range(1, 5):
        for b, b_plain in zip(getattr(model, f'layer{i}'), getattr(plain, f'layer{i}')):
            assert hasattr(b, 'context_block') == (i >= 2)
            assert hasattr(b, 'gen_attention_block') == (i >= 3)
            assert hasattr(b, 'nonlocal_block') == (i == 4)
            if i >= 2:  # each plugin takes the channels of the conv it follows
                assert b.context_block.in_channels == b_plain.conv3.out_channels
            if i >= 3:
                assert b.gen_attention_block.in_channels == b_plain.conv2.out_channels
            if i == 4:
                assert b.nonlocal_block.in_channels == b_plain.conv1.out_channels
    outs = model.train()(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == out_channels(kind_of(backbone_type))


def test_plugins_run_where_they_are_placed():
    """A plugin after conv i sees conv i's normalised and activated output; after the last conv,
    the branch output (with its norm, where the branch has one) before the addition."""
    seen = {}
    model = build('ResStage', plugins=[
        dict(cfg=context_block(postfix=1), position='after_conv1'),
        dict(cfg=context_block(postfix=2), position='after_conv3'),
    ]).eval()
    start, middle = model.layer2[0], model.layer2[1]  # branch ends with bn3 / with conv3
    for name, block in (('start', start), ('middle', middle)):
        for module, key, take in ((block.conv1, 'conv1', 'out'), (block.conv3, 'conv3', 'out'),
                                  (block.context_block1, 'p1', 'in'),
                                  (block.context_block2, 'p2', 'in')):
            module.register_forward_hook(
                lambda m, i, o, key=f'{name}.{key}', take=take:
                seen.update({key: (i[0] if take == 'in' else o).clone()}))
    model(torch.randn(1, 3, 32, 32))
    for name, block in (('start', start), ('middle', middle)):
        torch.testing.assert_close(seen[f'{name}.p1'],
                                   torch.relu(block.bn1(seen[f'{name}.conv1'])))
    torch.testing.assert_close(seen['start.p2'], start.bn3(seen['start.conv3']))
    torch.testing.assert_close(seen['middle.p2'], seen['middle.conv3'])


def test_plugins_of_one_type_need_postfixes():
    model = build('iResNet', plugins=[
        dict(cfg=context_block(postfix=1), position='after_conv3'),
        dict(cfg=context_block(postfix=2), position='after_conv3'),
    ])
    assert hasattr(model.layer1[0], 'context_block1') and hasattr(model.layer1[0],
                                                                  'context_block2')
    with pytest.raises(BackboneConfigError, match='duplicate plugin name.*postfix'):
        build('iResNet', plugins=[dict(cfg=context_block(), position='after_conv3')] * 2)


def test_plugin_bad_input():
    with pytest.raises(BackboneConfigError, match="position 'after_conv4'.*after_conv3"):
        build('iResNet', plugins=[dict(cfg=context_block(), position='after_conv4')])
    with pytest.raises(BackboneConfigError, match="position 'after_conv3'.*after_conv2"):
        build('iResNet', depth=18, plugins=[dict(cfg=context_block(), position='after_conv3')])
    with pytest.raises(BackboneConfigError, match='one bool per stage'):
        build('iResNet', plugins=[dict(cfg=context_block(), position='after_conv3',
                                       stages=(True, False))])


@pytest.mark.parametrize('backbone_type', ('ResStage', 'ResGroup', 'iResNet'))
def test_stem_channels(backbone_type):
    model = build(backbone_type, stem_channels=24)
    assert model.conv1.out_channels == 24
    assert model.layer1[0].conv1.in_channels == 24


def shapes(module, prefix):
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith(prefix)}


def test_deep_stem_and_avg_down_have_mmdet_resnetv1d_layout():
    ours = build('ResStage', base_channels=64, deep_stem=True, avg_down=True)
    theirs = ResNetV1d(depth=50)
    assert shapes(ours, 'stem.') == shapes(theirs, 'stem.')
    for i in range(1, 5):
        prefix = f'layer{i}.0.downsample.'
        assert shapes(ours, prefix) == shapes(theirs, prefix)
        assert type(getattr(ours, f'layer{i}')[0].downsample[0]) is nn.AvgPool2d
    assert not hasattr(ours, 'conv1')
    x = torch.randn(1, 3, 64, 64)
    ours.eval()
    theirs.eval()  # mmdet's ResNet.train() returns None
    assert [o.shape for o in ours(x)] == [o.shape for o in theirs(x)]


def test_avg_down_contradicts_the_improved_shortcut():
    with pytest.raises(BackboneConfigError, match="avg_down.*shortcut='pool'"):
        build('iResNet', avg_down=True)


def test_pretrained_is_deprecated_in_favour_of_init_cfg():
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = build('iResNet', pretrained='checkpoints/iresnet50.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/iresnet50.pth')
    with pytest.raises(BackboneConfigError, match='both'):
        build('iResNet', pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='a.pth'))
    with pytest.raises(BackboneConfigError, match='str'):
        build('iResNet', pretrained=123)


def test_resnet_checkpoint_of_a_base_config_is_flagged():
    with pytest.warns(UserWarning, match='torchvision://resnet50.*another network'):
        build('iResNet', init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        build('iResNet', init_cfg=dict(type='Pretrained', checkpoint='checkpoints/iresnet50.pth'))


def test_bad_depth_and_stages():
    with pytest.raises(KeyError, match='invalid depth 51'):
        build('iResNet', depth=51)
    for num_stages in (0, 5):
        with pytest.raises(BackboneConfigError, match='num_stages'):
            build('iResNet', num_stages=num_stages)
    with pytest.raises(BackboneConfigError, match='out_indices'):
        build('iResNet', num_stages=3, out_indices=(0, 3))


def test_out_channels_table_of_the_docs():
    """docs/custom_config.md's table against the built backbones (meta device: no memory)."""
    import os.path as osp
    import re
    docs = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'docs', 'custom_config.md')
    rows = [line for line in open(docs).read().splitlines()
            if re.match(r'\| `(i?Res|PreAct)', line)]
    assert len(rows) == 4
    for row in rows:
        types, depths, channels = [cell.strip() for cell in row.strip('|').split('|')]
        expected = [int(c) for c in channels.split(',')]
        for backbone_type in re.findall(r'`(\w+)`', types):
            for depth in (int(d) for d in depths.split(',')):
                with torch.device('meta'):
                    model = MODELS.build(dict(type=backbone_type, depth=depth))
                assert list(model.out_channels) == expected, (backbone_type, depth)
