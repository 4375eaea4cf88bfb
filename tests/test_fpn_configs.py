"""FPN detector configs, and mmdet's own ResNet-50 configs with only the backbone type changed.

Every config builds, computes its losses on a small image, runs backward with a gradient in the
backbone, and predicts. The tools refuse a backbone argument that cannot work and a neck that does
not fit the backbone, with one line and nothing written.
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmengine.config import Config

import iresnet_mmdet  # noqa: F401  (registers the backbones)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FPN_CONFIGS = sorted(
    p for family in ('faster_rcnn', 'retinanet', 'mask_rcnn')
    for p in glob.glob(osp.join(ROOT, 'configs', family, '*.py')))
#: Output channels of the two block kinds at base width 64 (the paper's Table / block definitions).
BOTTLENECK_CHANNELS = [256, 512, 1024, 2048]
GROUP_CHANNELS = [128, 256, 512, 1024]

register_all_modules()


def train_and_predict(model, with_mask=False, size=96):
    """One loss + backward and one predict on a small random image; returns the losses."""
    data = demo_mm_inputs(batch_size=1, image_shapes=[(3, size, size)], num_items=[3],
                          with_mask=with_mask)
    model.train()
    batch = model.data_preprocessor(data, True)
    losses = model(**batch, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, False), mode='predict')
    assert len(results) == 1 and hasattr(results[0], 'pred_instances')
    return losses


def test_every_family_has_its_configs():
    names = {osp.basename(p) for p in FPN_CONFIGS}
    for stem in ('faster-rcnn', 'retinanet', 'mask-rcnn'):
        for backbone in ('iresnet50', 'iresnet101', 'iresgroup50', 'iresgroup101'):
            assert f'{stem}_{backbone}_fpn_1x_coco.py' in names
    assert 'faster-rcnn_iresnet50-dconv-c3-c5_fpn_1x_coco.py' in names


@pytest.mark.parametrize('path', FPN_CONFIGS, ids=osp.basename)
def test_fpn_config_builds_trains_and_predicts(path):
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert cfg.custom_imports.imports == ['iresnet_mmdet']
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint=f"checkpoints/{backbone.type.lower()}{backbone.depth}.pth")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    expected = GROUP_CHANNELS if 'group' in backbone.type.lower() else BOTTLENECK_CHANNELS
    assert list(cfg.model.neck.in_channels) == expected == list(model.backbone.out_channels)
    if 'dconv' in path:
        from mmcv.ops import DeformConv2dPack
        assert not isinstance(model.backbone.layer1[0].conv2, DeformConv2dPack)
        assert all(isinstance(b.conv2, DeformConv2dPack) for i in (2, 3, 4)
                   for b in getattr(model.backbone, f'layer{i}'))
    train_and_predict(model, with_mask='mask-rcnn' in path)


MMDET_R50_BASES = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',  # style='caffe', frozen BN
    'mmdet::gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py',  # ContextBlock plugins
]


@pytest.mark.parametrize('base', MMDET_R50_BASES, ids=lambda b: osp.basename(b))
@pytest.mark.parametrize('backbone_type', ['iResNet', 'iResGroup'])
def test_mmdet_r50_config_with_only_the_type_changed(base, backbone_type, tmp_path):
    # init_cfg=None: the base's torchvision ResNet-50 weights do not fit (no download either)
    neck = f', neck=dict(in_channels={GROUP_CHANNELS})' if backbone_type == 'iResGroup' else ''
    (tmp_path / 'user.py').write_text(
        f"_base_ = '{base}'\n"
        "custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)\n"
        f"model = dict(backbone=dict(type='{backbone_type}', init_cfg=None){neck})\n")
    cfg = Config.fromfile(tmp_path / 'user.py')
    model = MODELS.build(cfg.model)
    if 'caffe' in base:
        assert model.backbone.layer2[0].conv1.stride == (2, 2)
    if 'gcb' in base:
        assert hasattr(model.backbone.layer3[0], 'context_block')
        assert not hasattr(model.backbone.layer1[0], 'context_block')
    train_and_predict(model, with_mask='mask' in base)


BAD_BACKBONES = [
    ("model = dict(backbone=dict(style='tensorflow'))", "unknown style 'tensorflow'"),
    ("model = dict(backbone=dict(dcn=dict(type='DCN'), stage_with_dcn=(False, True, True)))",
     'stage_with_dcn needs one bool per stage'),
    ("model = dict(backbone=dict(plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25), "
     "position='after_conv4')]))", "unknown plugin position 'after_conv4'"),
    ('model = dict(neck=dict(in_channels=[256, 512, 1024, 2048]))',
     r'iResGroup-50 outputs \(128, 256, 512, 1024\).*set model.neck.in_channels to '
     r'\[128, 256, 512, 1024\]'),
]


@pytest.mark.parametrize('change, message', BAD_BACKBONES)
def test_tools_refuse_a_backbone_or_neck_that_cannot_work(change, message, tmp_path):
    base = osp.join(ROOT, 'configs', 'faster_rcnn', 'faster-rcnn_iresgroup50_fpn_1x_coco.py')
    config = tmp_path / 'bad.py'
    config.write_text(f'_base_ = {base!r}\n{change}\n')
    work_dir = tmp_path / 'work'
    tools = [['tools/train.py', str(config)]]
    if 'neck' in change:  # the same check runs in both tools; one case is enough for test.py
        tools.append(['tools/test.py', str(config), str(tmp_path / 'missing.pth')])
    for tool in tools:
        result = subprocess.run([sys.executable, *tool, '--work-dir', str(work_dir)], cwd=ROOT,
                                capture_output=True, text=True, timeout=300,
                                env=dict(os.environ, PYTHONWARNINGS='ignore'))
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: '), lines
        assert re.search(message, lines[0]), lines[0]
        assert not work_dir.exists()
