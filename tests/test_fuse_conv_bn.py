"""``mmcv.cnn.fuse_conv_bn`` keeps the eval-mode outputs of every backbone and shipped detector.

mmcv folds each BN into the conv registered just before it among a module's children, whatever
``forward`` does; our blocks register the norms that do not normalise a conv's output (``bn0``, a
norm after the residual addition) first. References: the unfused model's own outputs, and the
number of unfusable norms derived from the paper's placements (below), not from our code.
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from torch.nn.modules.batchnorm import _BatchNorm

import iresnet_mmdet  # noqa: F401  (registers the backbones)

register_all_modules()  # mmdet's default scope for the detector configs
RTOL = 1e-5
STAGES_50 = (3, 4, 6, 3)
STAGES_18 = (2, 2, 2, 2)


def unfusable_norms(layout, stage_blocks):
    """Norms that normalise no conv's output, from the placements of the paper (Sec. 3.1):

    * post-activation ResNet and the ResGroup block: none;
    * pre-activation ResNet: the input norm of every block but the network's first, plus the
      final norm after the last addition;
    * stage layout: per stage, the input norm of the middle blocks after the first middle one
      (blocks 3 ... n) and the norm after the end block's addition.
    """
    if layout == 'resnet':
        return 0
    if layout == 'preact':
        return sum(stage_blocks) - 1 + 1
    return sum((n - 2) + 1 for n in stage_blocks)


BACKBONES = [
    # (config, layout, blocks per stage, input shape)
    (dict(type='iResNet', depth=50), 'stage', STAGES_50, (2, 3, 64, 64)),
    (dict(type='iResNet', depth=18), 'stage', STAGES_18, (2, 3, 64, 64)),
    (dict(type='ResStage', depth=50), 'stage', STAGES_50, (2, 3, 64, 64)),
    (dict(type='ResStage', depth=18), 'stage', STAGES_18, (2, 3, 64, 64)),
    (dict(type='PreActResNet', depth=50), 'preact', STAGES_50, (2, 3, 64, 64)),
    (dict(type='PreActResNet', depth=18), 'preact', STAGES_18, (2, 3, 64, 64)),
    (dict(type='iResGroup', depth=50), 'stage', STAGES_50, (2, 3, 64, 64)),
    (dict(type='iResGroupFix', depth=50), 'stage', STAGES_50, (2, 3, 64, 64)),
    (dict(type='ResGroup', depth=50), 'resnet', STAGES_50, (2, 3, 64, 64)),
    (dict(type='ResGroupFix', depth=50), 'resnet', STAGES_50, (2, 3, 64, 64)),
    (dict(type='iResNet', depth=101), 'stage', (3, 4, 23, 3), (1, 3, 64, 64)),
    (dict(type='iResNetCifar', depth=164), 'stage', (18, 18, 18), (2, 3, 32, 32)),
    (dict(type='ResNetCifar', depth=164), 'resnet', (18, 18, 18), (2, 3, 32, 32)),
    (dict(type='ResidualNetwork', depth=50, layout='preact', block='group', shortcut='pool'),
     'preact', STAGES_50, (2, 3, 64, 64)),
    (dict(type='iResNet', depth=50, style='caffe', plugins=[
        dict(cfg=dict(type='ContextBlock', ratio=1. / 4), position='after_conv3')]),
     'stage', STAGES_50, (2, 3, 64, 64)),
    (dict(type='ResStage', depth=50, deep_stem=True, avg_down=True, dcn=dict(
        type='DCNv2', deform_groups=1), stage_with_dcn=(False, True, True, True)),
     'stage', STAGES_50, (2, 3, 64, 64)),
]


def randomise_norms(model, seed=0):
    """Non-trivial BN statistics and affine parameters (fresh BNs fold to nearly nothing)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


def num_norms(model):
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def rel_diff(a, b):
    return float((a - b).abs().max() / a.abs().max())


def outputs(forward, x):
    with torch.no_grad():
        out = forward(x)
    flat = []
    stack = [out]
    while stack:
        item = stack.pop(0)
        if isinstance(item, (list, tuple)):
            stack = list(item) + stack
        else:
            flat.append(item)
    return flat


@pytest.mark.parametrize('cfg, layout, stage_blocks, shape', BACKBONES,
                         ids=[f"{c['type']}-{c['depth']}-{i}" for i, (c, *_) in
                              enumerate(BACKBONES)])
def test_fusing_keeps_backbone_outputs(cfg, layout, stage_blocks, shape):
    torch.manual_seed(0)
    model = randomise_norms(MODELS.build(cfg))
    x = torch.randn(shape)
    expected = outputs(model, x)
    fused = fuse_conv_bn(copy.deepcopy(model))
    for a, b in zip(expected, outputs(fused, x)):
        assert rel_diff(a, b) < RTOL
    expected = unfusable_norms(layout, stage_blocks)
    if cfg.get('dcn'):  # mmcv folds into nn.Conv2d only: the norm after each deformable conv stays
        expected += sum(n for n, dcn in zip(stage_blocks, cfg['stage_with_dcn']) if dcn)
    assert num_norms(fused) == expected
    assert num_norms(fused) < num_norms(model)


@pytest.mark.parametrize('backbone_type', ('iResNet3D', 'ResNet3D'))
def test_video_networks_are_left_as_they_are(backbone_type):
    """mmcv fuses ``nn.Conv2d`` only: the 3D networks keep every norm and their outputs."""
    model = randomise_norms(MODELS.build(dict(type=backbone_type, depth=50, base_channels=16)))
    x = torch.randn(1, 3, 4, 32, 32)
    expected = outputs(model, x)
    fused = fuse_conv_bn(copy.deepcopy(model))
    for a, b in zip(expected, outputs(fused, x)):
        assert rel_diff(a, b) < RTOL
    assert num_norms(fused) == num_norms(model)


CONFIGS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')
FAMILIES = ('ssd300', 'demo', 'faster_rcnn', 'retinanet', 'mask_rcnn', 'custom')
DETECTOR_CONFIGS = sorted(p for family in FAMILIES
                          for p in glob.glob(osp.join(CONFIGS, family, '*.py')))


def detector_forward(model):
    """Features, then every dense head on them (the parts that hold conv-BN pairs)."""
    def forward(x):
        feats = model.extract_feat(x)
        heads = [getattr(model, name) for name in ('bbox_head', 'rpn_head')
                 if hasattr(model, name)]
        return [feats] + [head(feats) for head in heads]
    return forward


@pytest.mark.parametrize('path', DETECTOR_CONFIGS, ids=osp.basename)
def test_fusing_keeps_detector_outputs(path):
    cfg = Config.fromfile(path)
    torch.manual_seed(0)
    model = randomise_norms(MODELS.build(cfg.model))
    size = 300 if 'ssd300' in osp.basename(path) else 128
    x = torch.randn(1, 3, size, size)
    expected = outputs(detector_forward(model), x)
    fused = fuse_conv_bn(copy.deepcopy(model))
    got = outputs(detector_forward(fused), x)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        assert rel_diff(a, b) < RTOL
    assert num_norms(fused) < num_norms(model)


def test_every_family_of_shipped_configs_is_covered():
    shipped = glob.glob(osp.join(CONFIGS, '*', '*.py'))
    assert sorted(p for p in shipped if '_base_' not in p) == DETECTOR_CONFIGS
    assert len(DETECTOR_CONFIGS) == 12 + 2 + 5 + 4 + 4 + 2


def test_mmdet_inference_benchmark_fuses_our_detector(tmp_path, monkeypatch):
    """mmdet's ``InferenceBenchmark(..., is_fuse_conv_bn=True)`` on the SSD300-iResNet-50 config.

    Its model set-up (load the checkpoint, ``fuse_conv_bn``) runs as it is; mmdet moves the model
    to CUDA unconditionally, so on a CPU-only machine ``.cuda()`` is made a no-op and the data
    loader is not built (no dataset needed for the model part).
    """
    from mmdet.utils.benchmark import InferenceBenchmark
    cfg = Config.fromfile(osp.join(CONFIGS, 'ssd300', 'ssd300_iresnet50_8xb32-65e_coco.py'))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = randomise_norms(MODELS.build(cfg.model))
    checkpoint = tmp_path / 'random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    if not torch.cuda.is_available():
        monkeypatch.setattr(torch.nn.Module, 'cuda', lambda self, *a, **k: self)
    monkeypatch.setattr('mmengine.runner.Runner.build_dataloader', lambda cfg: None)
    bench = InferenceBenchmark(cfg, str(checkpoint), False, True, max_iter=1)
    fused = bench.model.module if hasattr(bench.model, 'module') else bench.model
    fused = fused.cpu().eval()
    assert num_norms(fused) < num_norms(model)
    x = torch.randn(1, 3, 300, 300)
    for a, b in zip(outputs(detector_forward(model), x), outputs(detector_forward(fused), x)):
        assert rel_diff(a, b) < RTOL


@pytest.mark.parametrize('name', ['faster_rcnn/faster-rcnn_iresgroup50_fpn_1x_coco.py',
                                  'mask_rcnn/mask-rcnn_iresnet50_fpn_1x_coco.py'])
def test_fuse_and_verify_two_stage_detectors(name):
    """``tools/test.py --fuse-conv-bn`` on a two-stage detector: the check compares the RoI
    head's outputs too (on fixed proposals), and folding is accepted."""
    from iresnet_mmdet.engine.fuse import flat_tensors, fuse_and_verify, raw_forward
    torch.manual_seed(0)
    model = randomise_norms(MODELS.build(Config.fromfile(osp.join(CONFIGS, name)).model)).eval()
    # the compared outputs include the RoI head's: 2 images x 16 grid proposals, 80 classes + bg
    shapes = [tuple(t.shape) for t in flat_tensors(raw_forward(model, torch.randn(2, 3, 128, 160)))]
    assert (32, 81) in shapes and (32, 320) in shapes
    before = num_norms(model)
    assert fuse_and_verify(model, (128, 160)) <= RTOL
    assert num_norms(model) < before
