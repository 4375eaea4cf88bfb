"""Backbones: faithfulness to the authors' released models and the mmdet ResNet contract."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

import iresnet_mmdet  # noqa: F401
from backbone_checks import assert_checkpointing_works
from iresnet_mmdet.models import build_classifier, zoo
from iresnet_mmdet.models.backbones import ResidualNetwork
from mmdet.registry import MODELS

# The authors' layouts: every key and shape of their released models (data/official_keys/README.md).
KEYS_DIR = Path(__file__).resolve().parent / 'data' / 'official_keys'

# Our ImageNet-setting presets (mmdet's own ResNet aside).
VARIANTS = [f.backbone_type for f in zoo.FAMILIES
            if f.setting == 'imagenet' and issubclass(MODELS.get(f.backbone_type), ResidualNetwork)]
# Every family of the catalogue that builds here (mmdet's ResNet aside), at its smallest depth.
OUR_FAMILIES = [f for f in zoo.FAMILIES if issubclass(MODELS.get(f.backbone_type), ResidualNetwork)]


def read_official_keys(arch):
    keys = []
    for line in (KEYS_DIR / f'{arch}_keys.txt').read_text().splitlines():
        name, shape = line.split('\t')
        keys.append((name, tuple(int(s) for s in re.findall(r'\d+', shape))))
    return keys


def state_shapes(module):
    """Key -> shape. Loading goes by name; the registration order differs from the authors'
    where a block registers a norm first, so that mmcv's conv-BN fusion pairs the right modules."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# Each family with released weights at its first released depth, and two more iResNet depths.
@pytest.mark.parametrize('arch', [f.arch(f.released[0]) for f in zoo.FAMILIES if f.released]
                         + ['iresnet18', 'iresnet101'])
def test_state_dict_equals_official_keys(arch):
    model = build_classifier(arch)
    assert state_shapes(model) == dict(read_official_keys(arch))
    assert len(model.state_dict()) == len(read_official_keys(arch))
    assert model.eval() is model and not model.training
    # An official checkpoint loads with strict=True; the backbone has the same keys without fc.
    model.load_state_dict(
        {k: torch.zeros(s) for k, s in read_official_keys(arch)}, strict=True)
    family, depth = zoo.parse_arch(arch)
    backbone = MODELS.build(dict(type=family.backbone_type, depth=depth))
    assert state_shapes(backbone) == {
        k: s for k, s in read_official_keys(arch) if not k.startswith('fc.')}


@pytest.mark.parametrize('arch, paper_name', [
    ('resnet50', 'ResNet-50'), ('iresnet50', 'iResNet-50'), ('resgroupfix50', 'ResGroupFix-50'),
    ('resgroup50', 'ResGroup-50'), ('iresgroupfix50', 'iResGroupFix-50'),
    ('iresgroup50', 'iResGroup-50'), ('resgroupfix101', 'ResGroupFix-101'),
    ('resgroup101', 'ResGroup-101'), ('resgroupfix152', 'ResGroupFix-152'),
    ('resgroup152', 'ResGroup-152'), ('iresnet302', 'iResNet-302'), ('iresnet404', 'iResNet-404'),
    ('resstage50', 'ResStage-50')
])
def test_imagenet_parameter_counts_equal_paper(arch, paper_name):
    from iresnet_mmdet import paper
    model = build_classifier(arch)
    n = sum(p.numel() for p in model.parameters())
    published = paper.imagenet_complexity()[paper_name][0]
    assert paper.matches(n / 1e6, published), (n / 1e6, published)


def test_resnet200_classifier_uses_the_engine_with_resnet_keys():
    # mmdet's ResNet stops at 152 layers; ResNet-200 (released by the authors) comes from the
    # engine's default layout, with the same key names as mmdet's ResNet.
    model = build_classifier('resnet200')
    assert isinstance(model, ResidualNetwork) and model.layout == 'resnet'
    assert model.stage_blocks == (3, 24, 36, 3)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 64.67
    assert {k for k, _ in read_official_keys('resnet50')} <= set(model.state_dict())
    assert model.eval() is model


# --------------------------------------------------------------------------------------------
# Numerics against an independent functional implementation of the authors' forward pass
# (written from the authors' model code, github.com/iduta/iresnet models/*.py).
# --------------------------------------------------------------------------------------------
def _bn(sd, name, x):
    return F.batch_norm(x, sd[f'{name}.running_mean'], sd[f'{name}.running_var'],
                        sd[f'{name}.weight'], sd[f'{name}.bias'], False, 0.0, 1e-5)


def _conv(sd, name, x, stride=1):
    w = sd[f'{name}.weight']
    groups = x.shape[1] // w.shape[1]
    return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)


def reference_forward(sd, x, layout, stem_pool, stage_strides):
    """The authors' models, functionally. ``layout``: 'resnet' or 'stage'."""
    x = F.relu(_bn(sd, 'bn1', _conv(sd, 'conv1', x, 2)))
    if stem_pool:
        x = F.max_pool2d(x, 3, 2, 1)
    for s in range(1, 5):
        n = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith(f'layer{s}.'))
        for i in range(n):
            p = f'layer{s}.{i}'
            num_convs = 3 if f'{p}.conv3.weight' in sd else 2
            stride = stage_strides[s - 1] if i == 0 else 1
            last_bn = f'{p}.bn{num_convs}'
            identity = x
            if layout == 'stage' and i > 0:
                if f'{p}.bn0.weight' in sd:
                    out = F.relu(_bn(sd, f'{p}.bn0', x))
                else:  # the authors' in-place ReLU: it reaches the shortcut too
                    x = F.relu(x)
                    identity = out = x
            else:
                out = x
            for c in range(1, num_convs + 1):
                conv_stride = stride if (c == 2 and num_convs == 3) or (c == 1 and num_convs == 2) \
                    else 1
                out = _conv(sd, f'{p}.conv{c}', out, conv_stride)
                if c < num_convs:
                    out = F.relu(_bn(sd, f'{p}.bn{c}', out))
            end = layout == 'stage' and i == n - 1 and i > 0
            if not end and f'{last_bn}.weight' in sd:
                out = _bn(sd, last_bn, out)
            if f'{p}.downsample.2.weight' in sd:  # improved shortcut: pool, conv, BN
                identity = F.max_pool2d(x, 3, stride, 1)
                identity = _bn(sd, f'{p}.downsample.2', _conv(sd, f'{p}.downsample.1', identity))
            elif f'{p}.downsample.1.weight' in sd:
                identity = _bn(sd, f'{p}.downsample.1', _conv(sd, f'{p}.downsample.0', x, stride))
            elif layout == 'stage' and i == 0 and stride > 1:  # bare max-pool shortcut
                identity = F.max_pool2d(x, 3, stride, 1)
            out = out + identity
            if layout == 'resnet':
                out = F.relu(out)
            elif end:
                out = F.relu(_bn(sd, last_bn, out))
            x = out
    x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return F.linear(x, sd['fc.weight'], sd['fc.bias'])


def randomize(model, seed=0):
    """Random weights and norm statistics, so that every norm matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(('running_mean', 'bias')):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in)**0.5)
    return model


@pytest.mark.parametrize('arch, layout, stem_pool, strides', [
    ('iresnet50', 'stage', False, (2, 2, 2, 2)),
    ('iresnet18', 'stage', False, (2, 2, 2, 2)),
    ('resstage50', 'stage', True, (1, 2, 2, 2)),
    ('iresgroup50', 'stage', False, (2, 2, 2, 2)),
    ('iresgroupfix50', 'stage', False, (2, 2, 2, 2)),
    ('resgroup50', 'resnet', True, (1, 2, 2, 2)),
])
def test_outputs_equal_reference_implementation(arch, layout, stem_pool, strides):
    model = randomize(build_classifier(arch)).eval()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)
        ref = reference_forward(model.state_dict(), x, layout, stem_pool, strides)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


class PreActBlock(nn.Module):
    """A full pre-activation block (He et al. 2016, "Identity Mappings", fig. 4e), written
    independently of the engine: [norm-ReLU]-conv, norm-ReLU-conv, ..., add.

    Args:
        convs: ``(in, out, kernel, stride)`` of each branch conv.
        pre_activate: norm + ReLU (``bn0``) on the input. Every block except the network's first,
            whose input is the stem's normed and activated output.
        projection: a 1x1 conv + norm shortcut. It sees the pre-activated input (the paper's
            "pre-activation before the split" for blocks that change the shape).
        final: norm + ReLU after the addition (the network's last block: the final activation).
    """

    def __init__(self, convs, pre_activate, projection, final):
        super().__init__()
        self.pre_activate, self.final = pre_activate, final
        if pre_activate:
            self.bn0 = nn.BatchNorm2d(convs[0][0])
        for i, (cin, cout, k, stride) in enumerate(convs, start=1):
            setattr(self, f'conv{i}', nn.Conv2d(cin, cout, k, stride, k // 2, bias=False))
            if i < len(convs) or final:
                setattr(self, f'bn{i}', nn.BatchNorm2d(cout))
        self.n = len(convs)
        cin, cout = convs[0][0], convs[-1][1]
        stride = max(c[3] for c in convs)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout)) if projection else None

    def forward(self, x):
        pre = F.relu(self.bn0(x)) if self.pre_activate else x
        identity = x if self.downsample is None else self.downsample(pre)
        out = pre
        for i in range(1, self.n + 1):
            out = getattr(self, f'conv{i}')(out)
            if i < self.n:
                out = F.relu(getattr(self, f'bn{i}')(out))
        out = out + identity
        if self.final:
            out = F.relu(getattr(self, f'bn{self.n}')(out))
        return out


class MinimalPreActResNet(nn.Module):
    """Stem (7x7/2 conv, norm, ReLU, 3x3/2 max-pool), then stages of :class:`PreActBlock`.

    Bottleneck stages have 1x1 (w), 3x3 (w, the stride), 1x1 (4w) convs, basic stages two 3x3 (w).
    Returns every stage's output; the last block of the last stage ends with norm + ReLU.
    """

    def __init__(self, blocks, bottleneck, base, strides):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        cin = base
        self.stages = []
        for s, (n, stride) in enumerate(zip(blocks, strides)):
            w = base * 2**s
            cout = 4 * w if bottleneck else w
            layer = []
            for i in range(n):
                st = stride if i == 0 else 1
                convs = ([(cin, w, 1, 1), (w, w, 3, st), (w, cout, 1, 1)] if bottleneck else
                         [(cin, w, 3, st), (w, cout, 3, 1)])
                layer.append(PreActBlock(
                    convs, pre_activate=(s, i) != (0, 0), projection=st != 1 or cin != cout,
                    final=s == len(blocks) - 1 and i == n - 1))
                cin = cout
            setattr(self, f'layer{s + 1}', nn.Sequential(*layer))
            self.stages.append(f'layer{s + 1}')

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        outs = []
        for name in self.stages:
            x = getattr(self, name)(x)
            outs.append(x)
        return tuple(outs)


@pytest.mark.parametrize('depth, blocks, bottleneck, strides', [
    (50, (3, 4, 6, 3), True, (1, 2, 2, 2)),
    (18, (2, 2, 2, 2), False, (1, 2, 2, 2)),
    (50, (3, 4, 6), True, (1, 2, 1)),  # the SSD300 cut: the final norm + ReLU ends stage 3
])
def test_preactresnet_equals_minimal_preact_resnet(depth, blocks, bottleneck, strides):
    model = MODELS.build(dict(type='PreActResNet', depth=depth, base_channels=16,
                              num_stages=len(blocks), strides=strides))
    randomize(model).eval()
    reference = MinimalPreActResNet(blocks, bottleneck, 16, strides).eval()
    reference.load_state_dict(model.state_dict(), strict=True)  # same names and shapes
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(x), reference(x)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (ref[-1] >= 0).all() and (ref[0] < 0).any()  # only the last output is activated


def test_first_middle_block_relu_reaches_shortcut():
    """The stage start is "add, then ReLU": a pure-identity first middle block differs."""
    model = randomize(build_classifier('iresnet50')).eval()
    block = model.layer1[1]
    y = torch.randn(1, 256, 8, 8)
    y_before = y.clone()
    with torch.no_grad():
        out = block(y)
        r = F.relu(y)
        branch = block._branch(r)
    torch.testing.assert_close(out, r + branch)
    assert not torch.allclose(out, y + branch, atol=1e-3)
    assert torch.equal(y, y_before)  # the block input is untouched (no in-place side effect)


# --------------------------------------------------------------------------------------------
# mmdet backbone contract
# --------------------------------------------------------------------------------------------
def _depths(variant):
    return sorted(MODELS.get(variant).arch_settings)


def _expected_channels(variant, depth, base):
    block = MODELS.get(variant).arch_settings[depth][0]
    mult = {'basic': 1, 'bottleneck': 4, 'group': 2}[block]
    return tuple(base * mult * 2**i for i in range(4))


@pytest.mark.parametrize('variant, depth', [(v, d) for v in VARIANTS for d in _depths(v)])
def test_every_variant_and_depth_builds_with_documented_shapes(variant, depth):
    base = 16 if 'Group' in variant else 8  # tiny widths (64 groups need a 64-wide 3x3)
    model = MODELS.build(dict(type=variant, depth=depth, base_channels=base)).eval()
    expected = _expected_channels(variant, depth, base)
    assert model.out_channels == expected
    plan = MODELS.get(variant).plan(depth=depth, base_channels=base)
    assert plan.stage_out_channels() == expected
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 64 // s) for c, s in zip(expected, (4, 8, 16, 32))]


@pytest.mark.parametrize('family, depth',
                         [(f, d) for f in OUR_FAMILIES for d in f.smallest_depths()],
                         ids=lambda v: getattr(v, 'backbone_type', str(v)))
def test_planned_channels_and_settings_equal_the_built_network(family, depth):
    cls = MODELS.get(family.backbone_type)
    num_stages = len(cls.arch_settings[depth][1]) - 1  # a cut network, as SSD's
    args = dict(depth=depth, base_channels=16, num_stages=num_stages)
    with torch.device('meta'):
        built = cls(**args)
    plan = cls.plan(**args)
    assert plan.stage_out_channels() == built.out_channels
    for name in ('layout', 'shortcut', 'block', 'stem_pool', 'strides', 'groups', 'out_indices'):
        assert getattr(plan, name) == getattr(built, name), name
    assert not list(plan.children()) and not list(plan.parameters())  # nothing was built
    with pytest.raises(TypeError, match='unexpected keyword'):
        cls.plan(depth=depth, no_such_argument=1)


def test_plan_of_a_subclass_with_its_own_constructor_builds_it():
    iresnet = MODELS.get('iResNet')

    class WithExtra(iresnet):
        def __init__(self, extra=0, **kwargs):
            super().__init__(**kwargs)
            self.extra = extra

    plan = WithExtra.plan(depth=18, base_channels=8, extra=2)
    assert plan.extra == 2 and plan.stage_out_channels() == plan.out_channels == (8, 16, 32, 64)


def test_catalogue_names_and_files():
    assert len({f.backbone_type for f in zoo.FAMILIES}) == len(zoo.FAMILIES)
    for family in zoo.FAMILIES:
        assert MODELS.get(family.backbone_type) is not None, family
        for depth in family.depths:
            assert zoo.parse_arch(family.arch(depth)) == (family, depth)
        assert set(family.released) <= set(family.depths) | {200}  # mmdet's ResNet stops at 152
        for depth in family.released:
            assert (KEYS_DIR / f'{family.arch(depth)}_keys.txt').is_file()
    root = KEYS_DIR.parents[2]
    assert all((root / c).is_file() for c in zoo.ssd300_paper_configs())
    assert zoo.paper_name('iResNetCifar', 164) == 'iResNet-164'
    assert zoo.arch_of_paper_name('ResNet-164', 'cifar') == 'cifar_resnet164'


@pytest.mark.parametrize('variant', ['iResNet', 'iResGroup', 'ResStage'])
def test_ssd_cut_keeps_max_pool_with_stride_1(variant):
    model = MODELS.build(
        dict(type=variant, depth=50, num_stages=3, strides=(2, 2, 1) if variant[0] == 'i' else
             (1, 2, 1), out_indices=(2, ))).eval()
    with torch.no_grad():
        (c4, ) = model(torch.randn(1, 3, 300, 300))
    assert tuple(c4.shape[2:]) == (38, 38)
    assert c4.shape[1] == model.out_channels[-1] == (512 if 'Group' in variant else 1024)
    shortcut = model.layer3[0].downsample
    if variant[0] == 'i':
        assert isinstance(shortcut[0], nn.MaxPool2d) and shortcut[0].stride == 1
        keys = [k for k in model.state_dict() if k.startswith('layer3.0.downsample')]
        assert keys[0] == 'layer3.0.downsample.1.weight' and keys[1].startswith(
            'layer3.0.downsample.2.')
    assert not hasattr(model, 'layer4')


def test_unknown_depth_lists_valid_depths():
    with pytest.raises(KeyError, match=r'invalid depth 42 .*\[50, 101, 152\]'):
        MODELS.build(dict(type='iResGroup', depth=42))


def test_bad_design_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown layout 'post'"):
        MODELS.build(dict(type='ResidualNetwork', depth=50, layout='post'))
    with pytest.raises(ValueError, match='num_stages'):
        MODELS.build(dict(type='iResNet', depth=50, num_stages=5))
    with pytest.raises(ValueError, match='out_indices'):
        MODELS.build(dict(type='iResNet', depth=50, num_stages=3, out_indices=(3, )))


@pytest.mark.parametrize('variant', ['ResStage', 'iResNet', 'iResGroup', 'PreActResNet'])
def test_zero_init_residual_refused_where_branches_end_in_a_conv(variant):
    with pytest.raises(ValueError, match='zero_init_residual=True needs every residual branch'):
        MODELS.build(dict(type=variant, depth=50, zero_init_residual=True))


def test_zero_init_residual_zeroes_branch_norms_of_resgroup():
    model = MODELS.build(dict(type='ResGroup', depth=50, zero_init_residual=True))
    model.init_weights()
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0 for layer in
               (model.layer1, model.layer4) for b in layer)
    assert float(model.layer1[0].bn2.weight.detach().sum()) > 0


@pytest.mark.parametrize('variant', ['iResNet', 'PreActResNet', 'iResGroupFix'])
def test_with_cp_recomputes_blocks_saves_memory_and_keeps_numbers(variant):
    assert_checkpointing_works(
        dict(type=variant, depth=50, base_channels=16, norm_eval=False), (2, 3, 64, 64))


def test_frozen_stages_and_norm_eval():
    model = MODELS.build(dict(type='iResNet', depth=50, frozen_stages=2, norm_eval=True))
    model.train()
    for m in (model.conv1, model.bn1, model.layer1, model.layer2):
        assert all(not p.requires_grad for p in m.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert not model.layer1[0].bn1.training
    # norm_eval keeps every norm in eval mode, the convs' modules stay in train mode
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.layer3.training
    model = MODELS.build(dict(type='iResNet', depth=50, frozen_stages=0, norm_eval=False)).train()
    assert model.layer1[0].bn1.training and not model.bn1.training
    assert not model.conv1.weight.requires_grad and model.layer1[0].conv1.weight.requires_grad


def test_norm_cfg_gn_and_dilations():
    model = MODELS.build(
        dict(type='iResNet', depth=50, norm_cfg=dict(type='GN', num_groups=32),
             strides=(2, 2, 2, 1), dilations=(1, 1, 1, 2)))
    assert any(k.startswith('layer4.2.gn0') for k in model.state_dict())
    assert model.layer4[1].conv2.dilation == (2, 2)
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 64, 64))
    assert tuple(outs[3].shape) == (1, 2048, 4, 4)


# Run in a fresh interpreter: this test process has imported the package already.
CUSTOM_IMPORTS_SCRIPT = """
import sys
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmdet.registry import MODELS

def plugin_imported():
    return any(name.split('.')[0] == 'iresnet_mmdet' for name in sys.modules)

assert not plugin_imported(), 'imported before the config was read'
init_default_scope('mmdet')
assert MODELS.get('iResNet') is None, 'registered without the plugin'
cfg = Config.fromfile(sys.argv[1])
assert plugin_imported(), 'custom_imports did not import the plugin'
init_default_scope(cfg.default_scope)
for backbone in cfg.backbones:
    model = MODELS.build(backbone)
    print(type(model).__module__, type(model).__name__)
"""


def test_custom_imports_config_builds_every_variant(tmp_path):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(
        "custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)\n"
        "default_scope = 'mmdet'\n"
        f"backbones = [dict(type=t, depth=50) for t in {VARIANTS!r}]\n")
    done = subprocess.run([sys.executable, '-c', CUSTOM_IMPORTS_SCRIPT, str(cfg_file)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    built = [line.split() for line in done.stdout.splitlines()]
    assert [name for _, name in built] == VARIANTS
    assert all(module.startswith('iresnet_mmdet.') for module, _ in built)


def test_pretrained_init_cfg_with_prefix(tmp_path):
    source = randomize(MODELS.build(dict(type='iResGroupFix', depth=50)))
    ckpt = tmp_path / 'detector.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in source.state_dict().items()}}, ckpt)
    model = MODELS.build(
        dict(type='iResGroupFix', depth=50,
             init_cfg=dict(type='Pretrained', checkpoint=str(ckpt), prefix='backbone.')))
    model.init_weights()
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
