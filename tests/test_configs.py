"""SSD300 configs: every one builds, trains (loss) and predicts on a random batch, with the NVIDIA
SSD300 v1.1 topology (8732 priors, BN extra layers, one biased conv per head) and recipe."""
import re
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import iresnet_mmdet  # noqa: F401
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / 'configs' / 'ssd300').glob('*.py'))
# C4 = channels of the cut backbone's 38x38 output.
C4 = {'r50': 1024, 'r101': 1024, 'iresnet50': 1024, 'iresnet101': 1024, 'resstage50': 1024,
      'preactresnet50': 1024, 'resgroup50': 512, 'resgroupfix50': 512, 'iresgroup50': 512,
      'iresgroup101': 512, 'iresgroupfix50': 512, 'iresgroupfix101': 512}
BACKBONE = {'r': 'ResNet', 'iresnet': 'iResNet', 'resstage': 'ResStage',
            'preactresnet': 'PreActResNet', 'resgroup': 'ResGroup', 'resgroupfix': 'ResGroupFix',
            'iresgroup': 'iResGroup', 'iresgroupfix': 'iResGroupFix'}


def arch_of(path):
    return path.name.split('_')[1]  # ssd300_<arch>_8xb32-65e_coco.py


def build(path):
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    return cfg, MODELS.build(cfg.model)


def test_twelve_configs_named_consistently():
    assert sorted(arch_of(p) for p in CONFIGS) == sorted(C4)
    assert all(p.name.endswith('_8xb32-65e_coco.py') for p in CONFIGS)


@pytest.mark.parametrize('path', CONFIGS, ids=arch_of)
def test_config_builds_trains_and_predicts(path):
    cfg, model = build(path)
    arch = arch_of(path)
    family, depth = arch.rstrip('0123456789'), int(arch.lstrip('abcdefghijklmnopqrstuvwxyz'))
    assert type(model.backbone).__name__ == BACKBONE[family] and model.backbone.depth == depth
    assert cfg.custom_imports.imports == ['iresnet_mmdet']

    # Train mode: one real training step (loss, backward, SGD step) on a random 300x300 batch
    # (2 images: BN on the 1x1 level needs > 1 value).
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    grads, feats = {}, []
    optim_wrapper.optimizer.register_step_pre_hook(lambda *_: grads.update(
        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    model.neck.register_forward_hook(lambda m, a, out: feats.extend(out))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    packed = demo_mm_inputs(2, (3, 300, 300), num_items=[3, 2], num_classes=80)
    log_vars = model.train_step(packed, optim_wrapper)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (C4[arch], 38, 38), (512, 19, 19), (512, 10, 10), (256, 5, 5), (256, 3, 3), (256, 1, 1)]
    priors = model.bbox_head.prior_generator.grid_priors(
        [f.shape[-2:] for f in feats], device='cpu')
    assert sum(p.shape[0] for p in priors) == 8732
    assert {'loss', 'loss_cls', 'loss_bbox'} <= set(log_vars)
    assert all(torch.isfinite(v).all() for v in log_vars.values())
    # Every backbone parameter gets a gradient; every parameter with a nonzero gradient moved.
    # (Not all head/neck parameters: with 5 random boxes some levels match no prior, so their
    # reg conv gets a zero gradient, and the 1x1 level's BN over 2 values passes none back.)
    for name, p in model.named_parameters():
        grad = grads.get(name)
        if name.startswith('backbone.'):
            assert grad is not None and grad.any(), f'{name}: no gradient'
        if grad is not None and grad.any():
            assert not torch.equal(p.detach(), before[name]), f'{name}: not updated'

    # Test mode: detections (mmdet's plain SSDHead crashes in predict mode, FixedSSDHead does not).
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(demo_mm_inputs(1, (3, 300, 300)), False),
                        mode='predict')
    det = results[0].pred_instances
    assert det.bboxes.shape == (len(det.scores), 4) and len(det) <= 200
    assert len(det) == 0 or det.labels.max() < 80


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch, backbone, extras, loc, conf', [
    ('r50', 8.543, 3.774, 0.498, 10.080),
    ('iresnet50', 8.543, 3.774, 0.498, 10.080),
    ('iresgroup50', 10.001, 3.643, 0.424, 8.587),
    ('iresgroupfix50', 8.481, 3.643, 0.424, 8.587),
])
def test_parameter_breakdown(arch, backbone, extras, loc, conf):
    """Backbone / extra layers / loc heads / conf heads (M), as counted on NVIDIA's SSD300 v1.1
    model (DeepLearningExamples) with each backbone cut after layer3."""
    _, model = build(ROOT / 'configs' / 'ssd300' / f'ssd300_{arch}_8xb32-65e_coco.py')
    got = [count(model.backbone), count(model.neck), count(model.bbox_head.reg_convs),
           count(model.bbox_head.cls_convs)]
    assert [round(g / 1e6, 3) for g in got] == [backbone, extras, loc, conf]


def test_extra_layers_and_heads_match_nvidia():
    _, model = build(ROOT / 'configs' / 'ssd300' / 'ssd300_r50_8xb32-65e_coco.py')
    assert not hasattr(model.neck, 'l2_norm')
    widths = [(1024, 256, 512), (512, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)]
    stride_pad = [(2, 1), (2, 1), (2, 1), (1, 0), (1, 0)]
    assert len(model.neck.extra_layers) == 5
    for layer, (cin, mid, cout), (stride, pad) in zip(model.neck.extra_layers, widths, stride_pad):
        leaves = [m for m in layer.modules() if next(m.children(), None) is None]
        assert [type(m) for m in leaves] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
        conv1, conv2 = leaves[0], leaves[3]
        assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (cin, mid, (1, 1))
        assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size) == (mid, cout, (3, 3))
        assert conv2.stride == (stride, stride) and conv2.padding == (pad, pad)
        assert conv1.bias is None and conv2.bias is None
    head = model.bbox_head
    for branch, per_prior in ((head.cls_convs, 81), (head.reg_convs, 4)):
        for seq, cin, n in zip(branch, (1024, 512, 512, 256, 256, 256), (4, 6, 6, 6, 4, 4)):
            (conv, ) = list(seq)  # a single conv, no BN or activation
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (
                cin, n * per_prior, (3, 3))


def test_training_recipe_and_data():
    cfg = Config.fromfile(
        str(ROOT / 'configs' / 'ssd300' / 'ssd300_iresgroup101_8xb32-65e_coco.py'))
    # The schedule and optimizer: test_lr_schedule_follows_the_published_recipe.
    pre = cfg.model.data_preprocessor
    # torchvision's ImageNet statistics on the 0-255 scale
    assert pre.mean == pytest.approx([255 * m for m in (0.485, 0.456, 0.406)])
    assert pre.std == pytest.approx([255 * s for s in (0.229, 0.224, 0.225)])
    assert pre.bgr_to_rgb
    train = cfg.train_dataloader.dataset
    assert (train.data_root, train.ann_file, train.data_prefix.img) == (
        'data/coco/', 'annotations/instances_train2017.json', 'train2017/')
    val = cfg.val_dataloader.dataset
    assert (val.ann_file, val.data_prefix.img) == ('annotations/instances_val2017.json', 'val2017/')
    # the plugin's equivalents of mmdet's transforms (tests/test_ssd_transforms.py)
    assert [t.type for t in train.pipeline] == [
        'SafeLoadImageFromFile', 'LoadAnnotations', 'FastMinIoURandomCrop', 'Resize',
        'FastRandomFlip', 'FastPhotoMetricDistortion', 'PackDetInputs']
    assert train.pipeline[3].scale == (300, 300) and not train.pipeline[3].keep_ratio
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'CocoTableMetric'
    assert cfg.val_evaluator.ann_file == 'data/coco/annotations/instances_val2017.json'


def test_no_weight_decay_on_norm_and_bias():
    cfg, model = build(ROOT / 'configs' / 'ssd300' / 'ssd300_iresnet50_8xb32-65e_coco.py')
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    decay = {id(p): g['weight_decay'] for g in optim.param_groups for p in g['params']}
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
            expected = 0. if is_norm or pname == 'bias' else published_recipe()['decay']
            assert decay[id(p)] == expected, f'{name}.{pname}'


def published_recipe():
    """The recipe as docs/ssd300.md words it (NVIDIA's default), parsed from the page."""
    text = ' '.join((ROOT / 'docs' / 'ssd300.md').read_text().split())
    find = lambda pattern: re.search(pattern, text).groups()  # noqa: E731
    (epochs, ), (momentum, ) = find(r'(\d+) epochs'), find(r'momentum ([\d.]+)')
    lr, total, gpus, per_gpu = find(r'lr ([\d.]+) for a total batch of (\d+) \((\d+) GPUs x (\d+)')
    (warmup, ), (gamma, *milestones) = find(r'(\d+)-iteration linear warm-up'), find(
        r'x([\d.]+) at epochs (\d+) and (\d+)')
    (decay, ), (lr_rule, per) = find(r'weight decay ([\de.-]+) except'), find(
        r'\(([\de.-]+) x batch / (\d+)')
    return dict(epochs=int(epochs), momentum=float(momentum), lr=float(lr), total=int(total),
                gpus=int(gpus), per_gpu=int(per_gpu), warmup=int(warmup), gamma=float(gamma),
                milestones=[int(m) for m in milestones], decay=float(decay),
                lr_rule=float(lr_rule), per=int(per))


def test_lr_schedule_follows_the_published_recipe():
    """The built schedulers, stepped by mmengine's ParamSchedulerHook as the runner does, give at
    every iteration lr x min(1, k / warmup) x gamma^(milestones passed), k = 1-based iteration."""
    from mmengine.hooks import ParamSchedulerHook
    from mmengine.registry import PARAM_SCHEDULERS
    from mmengine.runner import Runner
    recipe = published_recipe()
    assert recipe['lr'] == pytest.approx(recipe['lr_rule'] * recipe['total'] / recipe['per'])
    assert recipe['total'] == recipe['gpus'] * recipe['per_gpu']
    cfgs = [Config.fromfile(str(p)) for p in CONFIGS]
    for key in ('param_scheduler', 'optim_wrapper', 'train_cfg', 'auto_scale_lr'):
        assert all(c[key] == cfgs[0][key] for c in cfgs), key
    cfg = cfgs[0]
    init_default_scope('mmdet')
    assert cfg.train_cfg.max_epochs == recipe['epochs']
    assert cfg.train_dataloader.batch_size == recipe['per_gpu']

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    for group in optim.optimizer.param_groups:
        assert group['momentum'] == recipe['momentum']
    # --auto-scale-lr (mmengine's Runner.scale_lr): lr_rule x real batch / per, for any batch.
    for world, batch in ((1, 32), (4, 16), (8, 32)):
        scaled = build_optim_wrapper(model, cfg.optim_wrapper)
        fake = SimpleNamespace(_train_dataloader=dict(batch_size=batch), world_size=world,
                               logger=MagicMock(), param_schedulers=None)
        Runner.scale_lr(fake, scaled, dict(cfg.auto_scale_lr, enable=True))
        assert scaled.get_lr()['lr'][0] == pytest.approx(
            recipe['lr_rule'] * world * batch / recipe['per'])

    epoch_length = 100
    runner = SimpleNamespace(param_schedulers=[PARAM_SCHEDULERS.build(
        s, default_args=dict(optimizer=optim, epoch_length=epoch_length))
        for s in cfg.param_scheduler])
    hook, k = ParamSchedulerHook(), 0
    for epoch in range(recipe['epochs']):
        for i in range(epoch_length):
            k += 1
            expected = recipe['lr'] * min(1., k / recipe['warmup']) * recipe['gamma']**sum(
                epoch >= m for m in recipe['milestones'])
            for group in optim.optimizer.param_groups:
                assert group['lr'] == pytest.approx(expected, rel=1e-9), (epoch, k)
            hook.after_train_iter(runner, i)
        hook.after_train_epoch(runner)
