"""The compile path: ``CompileHook`` and ``tools/train.py`` / ``tools/test.py --compile``.

The references are eager runs of the same model: in-process outputs of the eager model, and whole
train -> checkpoint -> test pipelines run without ``--compile``. The detector is the demo config
cut to base width 8 on a tiny synthetic dataset (8 train / 4 val images of 128x128), so that
inductor compiles in seconds. One process per tool run, one thread each.
"""
import json
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

import iresnet_mmdet  # noqa: F401  (registers the plugin; allow-lists checkpoint classes)
from iresnet_mmdet.engine.compile import CompileHook, add_compile_hook, compile_parts

from tool_runs import tool_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')
TIMEOUT = 300
# the compiled forward equals the eager one up to floating-point rounding (issue 13)
TOLERANCE = 1e-4

TINY_CONFIG = """
_base_ = {demo!r}
data_root = {data!r}
c4 = 4 * 8  # iResNet-18 at base width 8
extra = (32, 32, 16, 16, 16)
model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=(c4, ), out_channels=(c4, ) + extra),
    bbox_head=dict(in_channels=(c4, ) + extra))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
# 2 iterations, no validation during training (the test runs evaluate)
train_cfg = dict(max_epochs=1, val_interval=2)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=1))
"""


def run(args, **extra_env):
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                            timeout=TIMEOUT, cwd=ROOT, env=tool_env(**extra_env))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def losses(work_dir):
    """``{iteration: loss}`` of a training run's scalars."""
    (log_dir, ) = [d for d in work_dir.iterdir() if d.is_dir()]
    values = {}
    with open(log_dir / 'vis_data' / 'scalars.json') as f:
        for line in f:
            record = json.loads(line)
            if 'loss' in record:
                values[record['iter']] = record['loss']
    return values


def ground_truth_from(predictions, val_json, out, per_image=3):
    """An annotation file whose objects are the top ``per_image`` detections of ``predictions``.

    The briefly trained model finds none of the synthetic objects (AP 0 for any model), so the
    pipelines are compared on objects that the eager pipeline's own detections define: their AP
    is far from 0, and it changes when the compiled model's boxes, scores or labels do.
    """
    with open(val_json) as f:
        coco = json.load(f)
    cat_ids = [c['id'] for c in coco['categories']]  # label k is the k-th class of the metainfo
    annotations = []
    for pred in predictions:
        inst = pred['pred_instances']
        order = torch.as_tensor(inst['scores']).argsort(descending=True)[:per_image]
        for k in order.tolist():
            x1, y1, x2, y2 = (float(v) for v in inst['bboxes'][k])
            annotations.append(dict(
                id=len(annotations) + 1, image_id=int(pred['img_id']),
                category_id=cat_ids[int(inst['labels'][k])], bbox=[x1, y1, x2 - x1, y2 - y1],
                area=(x2 - x1) * (y2 - y1), iscrowd=0))
    coco['annotations'] = annotations
    with open(out, 'w') as f:
        json.dump(coco, f)
    return out


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('compile')
    data = base / 'data'
    run([osp.join(ROOT, 'tools', 'data', 'make_synthetic_coco.py'), '--out', data,
         '--num-train', '8', '--num-val', '4', '--image-size', '128', '--max-objects', '3'])
    config = base / 'tiny.py'
    config.write_text(TINY_CONFIG.format(demo=DEMO_CONFIG, data=str(data) + '/'))
    return dict(base=base, data=data, config=config)


def build_tiny(config):
    from iresnet_mmdet.analysis.building import build_from_config
    torch.manual_seed(0)
    model = build_from_config(str(config))
    # random BN statistics: a fresh BN is nearly the identity in eval mode
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ---- in process --------------------------------------------------------------------------------


class _Runner:
    """The part of mmengine's Runner that CompileHook uses."""

    def __init__(self, model):
        from mmengine.logging import MMLogger
        self.model = model
        self.logger = MMLogger.get_instance('test_compile')


def test_hook_compiles_backbone_neck_head_only_and_outputs_equal_eager(tiny):
    from mmengine.optim import OptimWrapper
    model = build_tiny(tiny['config']).eval()
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x, mode='tensor')

    # every graph dynamo captures goes through this backend, also during a training step
    graphs = []

    def recording_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    hook = CompileHook(backend=recording_backend)
    hook.before_train(_Runner(model))
    hook.before_test(_Runner(model))  # acts once
    compiled = {name for name, m in model.named_modules() if m._compiled_call_impl is not None}
    assert compiled == {'backbone', 'neck', 'bbox_head'}
    with torch.no_grad():
        outputs = model(x, mode='tensor')
    for got, ref in zip(sum(outputs, []), sum(expected, [])):
        assert relative(got, ref) <= TOLERANCE

    model.train()
    data = dict(inputs=[torch.randint(0, 255, (3, 300, 300), dtype=torch.uint8)] * 2,
                data_samples=_samples(2, 300))
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    before = len(graphs)
    model.train_step(data, wrapper)
    assert len(graphs) > before  # training mode: the modules were traced again
    targets = {str(node.target) for gm in graphs for node in gm.graph.nodes}
    assert any('conv2d' in t for t in targets)
    # AdamW's step (foreach/fused updates) stayed eager: no optimizer op in any captured graph
    assert not [t for t in targets if any(op in t for op in ('_foreach', 'addcdiv', 'lerp'))]


def _samples(batch, size):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = []
    for i in range(batch):
        shape = (size, size)
        sample = DetDataSample(metainfo=dict(img_id=i, img_shape=shape, ori_shape=shape,
                                             pad_shape=shape, scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 12., 60., 70.]]),
                                           labels=torch.tensor([i % 5]))
        samples.append(sample)
    return samples


def test_inductor_outputs_equal_eager(tiny):
    model = build_tiny(tiny['config']).eval()
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x, mode='tensor')
        assert compile_parts(model) == ['backbone', 'neck', 'bbox_head']
        outputs = model(x, mode='tensor')
    for got, ref in zip(sum(outputs, []), sum(expected, [])):
        assert relative(got, ref) <= TOLERANCE
    # parameters stay where they were: ordinary state-dict keys
    assert not [k for k in model.state_dict() if '_orig_mod' in k]


def test_config_switch_becomes_the_hook():
    from mmengine.config import Config
    cfg = Config(dict(compile=dict(mode='max-autotune'), custom_hooks=[dict(type='Other')]))
    assert add_compile_hook(cfg, enabled=False)
    assert cfg.compile is False  # mmengine's whole-train_step compilation is switched off
    assert cfg.custom_hooks == [dict(type='Other'), dict(type='CompileHook', mode='max-autotune')]
    assert add_compile_hook(cfg) and len(cfg.custom_hooks) == 2  # not added twice
    plain = Config(dict())
    assert not add_compile_hook(plain, enabled=False) and 'custom_hooks' not in plain


# ---- the tools ---------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def pipelines(tiny):
    """Eager and compiled train -> checkpoint; eager predictions for the derived ground truth."""
    config, base = tiny['config'], tiny['base']
    result = {}
    for name, flags in (('eager', []), ('compile', ['--compile'])):
        work_dir = base / f'train_{name}'
        out = run([TRAIN, config, '--work-dir', work_dir, *flags])
        result[name] = dict(work_dir=work_dir, ckpt=work_dir / 'epoch_1.pth', stdout=out.stdout)
    preds = base / 'eager.pkl'
    run([TEST, config, result['eager']['ckpt'], '--work-dir', base / 'test_pkl', '--out', preds])
    with open(preds, 'rb') as f:
        predictions = pickle.load(f)
    result['gt'] = ground_truth_from(predictions, tiny['data'] / 'annotations' /
                                     'instances_val.json', base / 'derived_val.json')
    return result


def evaluate(tiny, pipelines, ckpt, name, *flags, **extra_env):
    """Metrics of ``tools/test.py`` on the derived ground truth, and its console output."""
    gt = str(pipelines['gt'])
    out = tiny['base'] / f'{name}.json'
    result = run([TEST, tiny['config'], ckpt, '--work-dir', tiny['base'] / f'test_{name}',
                  '--metrics-out', out, *flags, '--cfg-options',
                  f'test_dataloader.dataset.ann_file={gt}', f'test_evaluator.ann_file={gt}'],
                 **extra_env)
    with open(out) as f:
        return json.load(f), result.stdout + result.stderr


def test_compiled_training_matches_eager_and_writes_ordinary_checkpoints(pipelines):
    assert 'CompileHook: compiled backbone, neck, bbox_head' in pipelines['compile']['stdout']
    eager, compiled = losses(pipelines['eager']['work_dir']), losses(
        pipelines['compile']['work_dir'])
    assert sorted(eager) == sorted(compiled) == [1, 2]
    for it in eager:
        assert abs(compiled[it] - eager[it]) <= TOLERANCE * abs(eager[it]), (it, eager, compiled)
    state = torch.load(pipelines['compile']['ckpt'])['state_dict']
    reference = torch.load(pipelines['eager']['ckpt'])['state_dict']
    assert not [k for k in state if '_orig_mod' in k]
    assert list(state) == list(reference)


def test_compiled_pipeline_gives_the_eager_metrics(tiny, pipelines):
    eager, _ = evaluate(tiny, pipelines, pipelines['eager']['ckpt'], 'eager')
    compiled, text = evaluate(tiny, pipelines, pipelines['compile']['ckpt'], 'compiled',
                              '--compile')
    assert 'CompileHook: compiled backbone, neck, bbox_head' in text
    assert eager['coco/bbox_AP'] > 0.5  # the derived objects are found: a sensitive comparison
    assert eager.keys() == compiled.keys()
    for key in eager:
        assert abs(compiled[key] - eager[key]) <= 1e-3, (key, eager, compiled)


def test_without_a_compiler_one_message_and_eager(tiny, pipelines):
    # a fresh inductor cache: nothing compiled earlier can stand in for the compiler; the compiled
    # run's checkpoint is then evaluated by an eager model
    reference, _ = evaluate(tiny, pipelines, pipelines['compile']['ckpt'], 'reference')
    metrics, text = evaluate(tiny, pipelines, pipelines['compile']['ckpt'], 'no_cxx', '--compile',
                             CXX='/bin/false',
                             TORCHINDUCTOR_CACHE_DIR=str(tiny['base'] / 'empty_cache'))
    warnings = [line for line in text.splitlines() if 'torch.compile does not work' in line]
    assert len(warnings) == 1, text[-3000:]
    assert 'InvalidCxxCompiler' in warnings[0] and 'running eagerly' in warnings[0]
    assert 'CompileHook: compiled' not in text and 'Traceback' not in text
    assert metrics == reference


def test_layout_optimisation_off_for_parts_with_narrow_grouped_convs(monkeypatch):
    from mmdet.registry import MODELS
    calls = {}
    monkeypatch.setattr(torch.nn.Module, 'compile',
                        lambda self, **kwargs: calls.setdefault(type(self).__name__, kwargs))
    model = torch.nn.Module()
    model.backbone = MODELS.build(dict(type='iResGroupFix', depth=50, base_channels=16))  # 1-8
    model.neck = MODELS.build(dict(type='iResGroup', depth=50))  # 32 channels per group
    model.bbox_head = torch.nn.Conv2d(64, 64, 3, groups=64)  # depthwise
    assert compile_parts(model, dynamic=False) == ['backbone', 'neck', 'bbox_head']
    assert calls == {'iResGroupFix': dict(dynamic=False, options=dict(layout_optimization=False)),
                     'iResGroup': dict(dynamic=False), 'Conv2d': dict(dynamic=False)}
    # the caller's choice wins: a mode (torch.compile takes mode or options) or the option itself
    calls.clear()
    compile_parts(model, parts=('backbone', ), mode='max-autotune')
    assert calls == {'iResGroupFix': dict(mode='max-autotune')}
    calls.clear()
    compile_parts(model, parts=('backbone', ), options=dict(layout_optimization=True, x=1))
    assert calls == {'iResGroupFix': dict(options=dict(layout_optimization=True, x=1))}
