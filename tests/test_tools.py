"""tools/train.py, tools/test.py and torchrun on CPU, run as a user would (subprocesses).

Everything runs on a tiny synthetic dataset (16 train / 8 val images) with a narrow iResNet-18 cut
(base width 8) at SSD300's 300x300 input, so each run takes seconds on 2 CPU cores.
"""
import importlib.util
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch

import iresnet_mmdet  # noqa: F401  (allow-lists mmengine checkpoint classes for torch.load)

from iresnet_mmdet.errors import ToolError
from tool_runs import assert_one_line_error, tool_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')
TIMEOUT = 240

TINY_CONFIG = """
_base_ = {demo!r}
data_root = {data!r}
c4 = 4 * {width}  # iResNet-18 (basic blocks): C4 = 4 x base width
extra = (32, 32, 16, 16, 16)
model = dict(
    backbone=dict(base_channels={width}),
    neck=dict(in_channels=(c4, ), out_channels=(c4, ) + extra),
    bbox_head=dict(in_channels=(c4, ) + extra))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=2, val_interval=2)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=3))
"""

# A "crash" right after the first checkpoint: the hook runs after CheckpointHook (priority
# LOWEST) and kills the process without any clean-up.
STOP_HOOK = """
import os
from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class DieAfterFirstEpoch(Hook):
    priority = 'LOWEST'

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == 1:  # the loop counts the epoch up after this hook
            os._exit(17)
"""


# Per-rank gradients of the first training step, for the two-process test: each rank's gradient of
# its own batch, computed on a copy of the model without DDP (before the step), and the gradient
# the optimizer sees after DDP's backward (which should be the ranks' average).
GRAD_HOOK = """
import copy
import os
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmdet.registry import HOOKS

OUT = os.environ['GRAD_DIR']


def bare(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class RecordFirstGradients(Hook):

    def before_train(self, runner):
        names = {id(p): n for n, p in bare(runner.model).named_parameters()}

        def record(optimizer, args, kwargs):
            if runner.iter == 0:
                grads = {names[id(p)]: p.grad.detach().clone() for group in optimizer.param_groups
                         for p in group['params'] if p.grad is not None}
                torch.save(grads, os.path.join(OUT, f'reduced_{get_rank()}.pt'))

        runner.optim_wrapper.optimizer.register_step_pre_hook(record)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter != 0:
            return
        local = copy.deepcopy(bare(runner.model))
        loss, _ = local.parse_losses(local(**local.data_preprocessor(data_batch, True),
                                           mode='loss'))
        loss.backward()
        grads = {n: p.grad for n, p in local.named_parameters() if p.grad is not None}
        torch.save(grads, os.path.join(OUT, f'local_{get_rank()}.pt'))
"""


def run(args, **extra_env):
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                          env=tool_env(**extra_env))


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def dist(tool, *args, processes=2, **extra_env):
    """``tools/dist_train.sh CONFIG N ...`` or ``tools/dist_test.sh CONFIG CKPT N ...`` (torchrun)."""
    positional = 1 if tool == 'train' else 2
    args = [*args[:positional], str(processes), *args[positional:]]
    return run(['bash', osp.join(ROOT, 'tools', f'dist_{tool}.sh'), *args],
               PORT=str(free_port()), PYTHON=sys.executable, **extra_env)


def derived_config(tmp_path, base, name, *lines, modules=()):
    """A config file ``name`` in tmp_path: ``_base_ = base`` plus the given lines; ``modules``
    (test hook modules in tmp_path) are imported by the run."""
    imports = ['iresnet_mmdet', *modules]
    path = tmp_path / name
    path.write_text('\n'.join([f'_base_ = {str(base)!r}',
                               f'custom_imports = dict(imports={imports!r}, '
                               'allow_failed_imports=False)', *lines]) + '\n')
    return str(path)


def assert_same_weights(first, second):
    """Two checkpoints hold bit-identical weights."""
    a, b = torch.load(first)['state_dict'], torch.load(second)['state_dict']
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, (len(differ), differ[:3],
                        max((a[k].double() - b[k].double()).abs().max().item() for k in differ))


def read_metrics(path):
    with open(path) as f:
        return json.load(f)


def run_log(work_dir):
    """Text of every log file of a work dir (all runs)."""
    texts = []
    for entry in sorted(os.listdir(work_dir)):
        log = osp.join(work_dir, entry, f'{entry}.log')
        if osp.isfile(log):
            with open(log) as f:
                texts.append(f.read())
    return '\n'.join(texts)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Tiny data and configs, and one single-process training run (2 epochs)."""
    base = tmp_path_factory.mktemp('tools')
    data = base / 'data'
    check(run([sys.executable, osp.join(ROOT, 'tools', 'data', 'make_synthetic_coco.py'),
               '--out', str(data), '--num-train', '16', '--num-val', '8', '--image-size', '128',
               '--max-objects', '3']))
    configs = {}
    for name, width in (('tiny', 8), ('wider', 16)):
        path = base / f'{name}.py'
        path.write_text(TINY_CONFIG.format(demo=DEMO_CONFIG, data=str(data) + '/', width=width))
        configs[name] = str(path)
    work_dir = base / 'work_single'
    result = check(run([sys.executable, TRAIN, configs['tiny'], '--work-dir', str(work_dir)]))
    return dict(base=base, data=data, configs=configs, work_dir=work_dir, train=result)


def test_train_single_process_then_test(setup):
    work_dir = setup['work_dir']
    ckpt = work_dir / 'epoch_2.pth'
    assert ckpt.is_file() and (work_dir / 'epoch_1.pth').is_file()
    assert 'last checkpoint' in setup['train'].stdout
    # the full mmengine checkpoint loads with torch.load's weights_only default
    loaded = torch.load(ckpt)
    assert loaded['meta']['epoch'] == 2
    assert {'state_dict', 'optimizer', 'message_hub', 'param_schedulers'} <= set(loaded)
    assert type(loaded['message_hub']['log_scalars']['train/loss']).__name__ == 'HistoryBuffer'

    out = setup['base'] / 'single_metrics.json'
    pkl = setup['base'] / 'preds.pkl'
    result = check(run([sys.executable, TEST, setup['configs']['tiny'], str(ckpt), '--work-dir',
                        str(setup['base'] / 'test_single'), '--metrics-out', str(out), '--out',
                        str(pkl)]))
    metrics = read_metrics(out)
    # the demo config's CocoTableMetric: the twelve COCO figures (+ bbox_mAP)
    for name in ('mAP', 'AP', 'AP50', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARl'):
        value = metrics[f'coco/bbox_{name}']
        assert 0.0 <= value <= 1.0 or value == -1.0, (name, metrics)
    assert 'coco/bbox_mAP' in result.stdout
    assert pkl.is_file() and pkl.stat().st_size > 0


def detect(model, image_dir, images, categories):
    """COCO results of ``model`` (mmdet's inference_detector, one image at a time)."""
    from mmdet.apis import inference_detector
    results = []
    for image in images:
        pred = inference_detector(model, str(image_dir / image['file_name'])).pred_instances
        for box, score, label in zip(pred.bboxes.tolist(), pred.scores.tolist(),
                                     pred.labels.tolist()):
            results.append(dict(image_id=image['id'], category_id=categories[label], score=score,
                                bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]]))
    return results


def moved_top_detections(val, results, per_image=3):
    """Ground truth made of each image's best detections, moved by 4-12% of their size: a
    checkpoint's AP against it is well inside (0, 1), other weights' far lower."""
    annotations = []
    for image in val['images']:
        mine = sorted((r for r in results if r['image_id'] == image['id']),
                      key=lambda r: -r['score'])[:per_image]
        for i, r in enumerate(mine):
            x, y, w, h = r['bbox']
            box = [x + 0.04 * (i + 1) * w, y + 0.04 * h, w, h]
            annotations.append(dict(id=len(annotations) + 1, image_id=image['id'], bbox=box,
                                    category_id=r['category_id'], area=w * h, iscrowd=0))
    return dict(val, annotations=annotations)


def coco_ap(gt_file, results):
    """pycocotools' AP (IoU 0.50:0.95) of COCO results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(str(gt_file))
    evaluation = COCOeval(gt, gt.loadRes(results), 'bbox')
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation.stats[0]


def test_test_tool_evaluates_the_given_checkpoint(setup, tmp_path):
    from mmdet.apis import init_detector
    ckpt = str(setup['work_dir'] / 'epoch_2.pth')
    options = {'model.test_cfg.score_thr': 0.0}
    val = read_metrics(setup['data'] / 'annotations' / 'instances_val.json')
    classes = ('circle', 'square', 'triangle', 'cross', 'ring')  # the demo data's, in order
    categories = [next(c['id'] for c in val['categories'] if c['name'] == name)
                  for name in classes]
    images = setup['data'] / 'val'
    model = init_detector(setup['configs']['tiny'], ckpt, device='cpu', cfg_options=options)
    results = detect(model, images, val['images'], categories)
    gt_file = tmp_path / 'moved_top_detections.json'
    gt_file.write_text(json.dumps(moved_top_detections(val, results)))
    reference = coco_ap(gt_file, results)
    torch.manual_seed(1)
    untrained = init_detector(setup['configs']['tiny'], None, device='cpu', cfg_options=options)
    assert 0.2 < reference < 0.95
    assert coco_ap(gt_file, detect(untrained, images, val['images'], categories)) < reference - 0.1

    out = tmp_path / 'metrics.json'
    check(run([sys.executable, TEST, setup['configs']['tiny'], ckpt, '--work-dir',
               str(tmp_path / 'w'), '--metrics-out', str(out), '--cfg-options',
               f'test_dataloader.dataset.ann_file={gt_file}', f'test_evaluator.ann_file={gt_file}',
               'model.test_cfg.score_thr=0.0']))
    assert read_metrics(out)['coco/bbox_mAP'] == pytest.approx(reference, abs=1e-6)


def test_two_cpu_processes_train_and_test(setup, tmp_path):
    work_dir = setup['base'] / 'work_ddp'
    (tmp_path / 'grad_hook.py').write_text(GRAD_HOOK)
    config = derived_config(tmp_path, setup['configs']['tiny'], 'grads.py',
                            "custom_hooks = _base_.custom_hooks + [dict(type='RecordFirstGradients')]",
                            modules=['grad_hook'])
    result = dist('train', config, '--work-dir', str(work_dir), '--cfg-options',
                  'train_cfg.max_epochs=1', PYTHONPATH=str(tmp_path), GRAD_DIR=str(tmp_path))
    check(result)
    # DDP averages the gradients: after backward both ranks hold the mean of the gradients of
    # their own batches (each computed on a copy of the model in a single process)
    local = [torch.load(tmp_path / f'local_{rank}.pt') for rank in (0, 1)]
    reduced = [torch.load(tmp_path / f'reduced_{rank}.pt') for rank in (0, 1)]
    assert local[0].keys() == reduced[0].keys() == reduced[1].keys() and len(local[0]) > 50
    assert any(not torch.allclose(local[0][k], local[1][k]) for k in local[0])  # other batches
    for key, grad in reduced[0].items():
        assert torch.equal(grad, reduced[1][key]), key
        torch.testing.assert_close(grad, (local[0][key] + local[1][key]) / 2, rtol=1e-4,
                                   atol=1e-6, msg=key)
    log = run_log(work_dir)
    assert 'Distributed training: True' in log
    # 16 images, 4 per process and step, 2 processes: 2 steps per epoch (1 process: 4)
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', log), log[-2000:]
    assert (work_dir / 'epoch_1.pth').is_file()
    assert result.stdout.count('Training finished') == 1  # only rank 0 reports

    # testing one checkpoint: 2 processes give exactly the metrics of 1 process
    ckpt = str(setup['work_dir'] / 'epoch_2.pth')
    one, two = setup['base'] / 'm1.json', setup['base'] / 'm2.json'
    check(run([sys.executable, TEST, setup['configs']['tiny'], ckpt, '--work-dir',
               str(setup['base'] / 'test_one'), '--metrics-out', str(one)]))
    check(dist('test', setup['configs']['tiny'], ckpt, '--work-dir',
                   str(setup['base'] / 'test_two'), '--metrics-out', str(two)))
    assert read_metrics(one) == read_metrics(two)


def train_killed_then_resumed(tmp_path, config, name):
    """Train ``config`` until it dies right after epoch 1's checkpoint, then ``--resume`` it in
    the same work dir; returns the work dir and the resumed run's log and stdout."""
    (tmp_path / 'die_hook.py').write_text(STOP_HOOK)
    dies = derived_config(tmp_path, config, f'{name}_dies.py',
                          "custom_hooks = _base_.custom_hooks + [dict(type='DieAfterFirstEpoch')]",
                          modules=['die_hook'])
    work_dir = tmp_path / f'work_{name}'
    first = run([sys.executable, TRAIN, dies, '--work-dir', str(work_dir)],
                PYTHONPATH=str(tmp_path))
    assert first.returncode == 17, first.stderr[-2000:]
    assert (work_dir / 'epoch_1.pth').is_file() and not (work_dir / 'epoch_2.pth').exists()

    # restart the same config without the crash, resuming from the work dir's latest checkpoint
    second = check(run([sys.executable, TRAIN, config, '--work-dir', str(work_dir), '--resume']))
    logs = sorted(d for d in os.listdir(work_dir) if osp.isdir(work_dir / d))
    with open(work_dir / logs[-1] / f'{logs[-1]}.log') as f:
        return work_dir, f.read(), second.stdout


def test_resume_continues_bit_identically(setup, tmp_path):
    work_dir, resumed_log, stdout = train_killed_then_resumed(
        tmp_path, setup['configs']['tiny'], 'tiny')
    assert 'resumed epoch: 1, iter: 4' in resumed_log
    assert 'Epoch(train) [1]' not in resumed_log  # epoch 1 is not trained again
    assert 'Epoch(train) [2][4/4]' in resumed_log
    assert torch.load(work_dir / 'epoch_2.pth')['meta']['epoch'] == 2
    assert 'epoch_2.pth' in stdout
    # the same weights as the uninterrupted run of the setup (its random flips included)
    assert_same_weights(work_dir / 'epoch_2.pth', setup['work_dir'] / 'epoch_2.pth')


def test_resume_with_loader_workers_is_bit_identical(setup, tmp_path):
    # persistent workers in the config: tools/train.py starts them once per epoch instead
    config = derived_config(tmp_path, setup['configs']['tiny'], 'workers.py',
                            'train_dataloader = dict(num_workers=2, persistent_workers=True)')
    uninterrupted = tmp_path / 'work_full'
    check(run([sys.executable, TRAIN, config, '--work-dir', str(uninterrupted)]))
    work_dir, _, _ = train_killed_then_resumed(tmp_path, config, 'workers')
    assert_same_weights(work_dir / 'epoch_2.pth', uninterrupted / 'epoch_2.pth')


def test_plot_curves(setup, tmp_path):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
    try:
        import plot_curves
    finally:
        sys.path.pop(0)
    loss, metric, key = plot_curves.load_curves(str(setup['work_dir']))
    assert sorted(loss) == [1, 2] and all(v > 0 for v in loss.values())
    assert key == 'coco/bbox_mAP' and sorted(metric) == [2]
    out = tmp_path / 'curves.png'
    plot_curves.main([str(setup['work_dir']), str(setup['work_dir']), '--labels', 'a', 'b',
                      '--out', str(out)])
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(ToolError, match='is a file, so no folder can be made under it'):
        plot_curves.main([str(setup['work_dir']), '--out', str(tmp_path / 'a_file' / 'c.png')])


# ---- bad input: one "error:" line, exit status 2, no traceback --------------------------------


def test_error_missing_data_directory(setup, tmp_path):
    missing = str(tmp_path / 'no_such_dir') + '/'
    result = run([sys.executable, TRAIN, setup['configs']['tiny'], '--work-dir',
                  str(tmp_path / 'w'), '--cfg-options',
                  f'train_dataloader.dataset.data_root={missing}'])
    assert_one_line_error(result, 'no_such_dir', 'does not exist', 'make_synthetic_coco.py')


def test_dist_scripts_report_bad_input_once_without_starting_processes(setup, tmp_path):
    missing = str(tmp_path / 'no_such_dir') + '/'
    work_dir = tmp_path / 'w'
    result = dist('train', setup['configs']['tiny'], '--work-dir', str(work_dir), '--cfg-options',
                  f'train_dataloader.dataset.data_root={missing}')
    assert_one_line_error(result, 'no_such_dir', 'does not exist')
    assert 'ChildFailedError' not in result.stderr and not work_dir.exists()
    result = dist('test', setup['configs']['tiny'], str(tmp_path / 'none.pth'))
    assert_one_line_error(result, 'none.pth', 'does not exist')


def test_error_malformed_annotation_file(setup, tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [')
    result = run([sys.executable, TEST, setup['configs']['tiny'],
                  str(setup['work_dir'] / 'epoch_2.pth'), '--work-dir', str(tmp_path / 'w'),
                  '--cfg-options', f'test_dataloader.dataset.ann_file={bad}'])
    assert_one_line_error(result, 'bad.json', 'not valid JSON')


def test_error_checkpoint_of_another_architecture(setup, tmp_path):
    result = run([sys.executable, TEST, setup['configs']['wider'],
                  str(setup['work_dir'] / 'epoch_2.pth'), '--work-dir', str(tmp_path / 'w')])
    assert_one_line_error(result, 'does not fit the model', 'another shape')


def test_error_unknown_backbone_type(setup, tmp_path):
    result = run([sys.executable, TRAIN, setup['configs']['tiny'], '--work-dir',
                  str(tmp_path / 'w'), '--cfg-options', 'model.backbone.type=iResNeXt'])
    assert_one_line_error(result, "unknown type 'iResNeXt'", 'iResNet')


class _RunsCommand:
    """Unpickling this would create a marker file through subprocess."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (['touch', self.marker], ))


def test_error_checkpoint_with_code_is_refused(setup, tmp_path):
    marker = tmp_path / 'pwned'
    state = torch.load(setup['work_dir'] / 'epoch_2.pth')['state_dict']
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': state, 'meta': {'payload': _RunsCommand(str(marker))}}, evil)
    result = run([sys.executable, TEST, setup['configs']['tiny'], str(evil), '--work-dir',
                  str(tmp_path / 'w')])
    assert_one_line_error(result, 'evil.pth', 'refuses')
    assert not marker.exists()


def test_error_annotation_categories_share_no_class_with_the_dataset(setup, tmp_path):
    # Without metainfo the dataset takes COCO's 80 classes, none of which the synthetic file has:
    # mmengine would build an empty dataset and crash in its data concatenation.
    result = run([sys.executable, TRAIN, setup['configs']['tiny'], '--work-dir',
                  str(tmp_path / 'w'), '--cfg-options', 'train_dataloader.dataset.metainfo=None'])
    assert_one_line_error(result, 'none of the categories', "'circle'", 'metainfo')


def test_error_cfg_options_that_cannot_merge(setup, tmp_path):
    result = run([sys.executable, TRAIN, setup['configs']['tiny'], '--work-dir',
                  str(tmp_path / 'w'), '--cfg-options', 'model.backbone.init_cfg.type=Pretrained'])
    assert_one_line_error(result, '--cfg-options cannot be merged', 'init_cfg')


# ---- bad input caught before the run (in-process: each case costs no interpreter start) -------


def tool_module(path):
    spec = importlib.util.spec_from_file_location('tool_' + osp.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def damaged_data(setup, tmp_path):
    """A copy of the tiny data with one truncated and one empty training image."""
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(setup['data'], data)
    images = sorted((data / 'train').iterdir())
    content = images[3].read_bytes()
    images[3].write_bytes(content[:len(content) // 2])
    images[5].write_bytes(b'')
    return data, images[3].name, images[5].name


def backbone_checkpoint(setup, tmp_path, broken):
    """The tiny model's backbone weights as a Pretrained file (``broken``: one weight missing)."""
    state = torch.load(setup['work_dir'] / 'epoch_2.pth')['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    if broken:
        backbone.pop('layer1.0.conv1.weight')
    path = tmp_path / ('broken.pth' if broken else 'backbone.pth')
    torch.save({'state_dict': backbone}, path)
    return path


def pretrained_config(setup, tmp_path, checkpoint):
    return derived_config(tmp_path, setup['configs']['tiny'], 'pretrained.py',
                          "model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
                          f"type='Pretrained', checkpoint={str(checkpoint)!r})))")


def test_train_check_catches_what_the_run_would_fail_on(setup, tmp_path):
    train = tool_module(TRAIN)
    tiny = setup['configs']['tiny']

    def fails(argv, *fragments):
        with pytest.raises(ToolError) as caught:
            train.main([*argv, '--work-dir', str(tmp_path / 'w'), '--check'])
        for fragment in fragments:
            assert fragment in str(caught.value), str(caught.value)

    (tmp_path / 'empty.py').write_text('')
    fails([str(tmp_path / 'empty.py')], 'defines no model')
    (tmp_path / 'binary.py').write_bytes(bytes(range(128, 256)) * 4)
    fails([str(tmp_path / 'binary.py')], 'not UTF-8')
    fails([tiny, '--cfg-options', 'train_cfg.max_epochs=abc'], 'train_cfg.max_epochs', 'integer')
    fails([tiny, '--cfg-options', 'model.backbone.norm_eval=yes'], 'True or False')
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(ToolError, match='is a file, so no folder can be made under it'):
        train.main([tiny, '--work-dir', str(tmp_path / 'a_file' / 'run'), '--check'])
    fails([pretrained_config(setup, tmp_path, tmp_path / 'missing.pth')], 'missing.pth',
          'does not exist', 'docs/converter.md')
    fails([pretrained_config(setup, tmp_path, backbone_checkpoint(setup, tmp_path, True))],
          'broken.pth', 'does not fit the backbone', 'layer1.0.conv1.weight', 'docs/converter.md')
    assert train.main([pretrained_config(setup, tmp_path,
                                         backbone_checkpoint(setup, tmp_path, False)),
                       '--work-dir', str(tmp_path / 'w'), '--check']) == 0
    data, truncated, empty = damaged_data(setup, tmp_path)
    fails([tiny, '--cfg-options', f'train_dataloader.dataset.data_root={data}/'],
          '2 of the 16 images', f'{truncated}\' is a truncated JPEG', f'{empty}\' is empty')
    assert not (tmp_path / 'w').exists()  # checks write nothing


def test_test_tool_checks_its_outputs_before_the_work(setup, tmp_path):
    test = tool_module(TEST)
    ckpt = str(setup['work_dir'] / 'epoch_2.pth')
    (tmp_path / 'a_file').write_text('')
    for option, path, message in (('--out', tmp_path / 'a_file' / 'p.pkl', 'is a file, so no'),
                                  ('--metrics-out', tmp_path, 'is a directory, not a file')):
        with pytest.raises(ToolError, match=message):
            test.main([setup['configs']['tiny'], ckpt, option, str(path), '--check'])


def test_test_tool_default_work_dir_leaves_the_training_run_alone(setup, tmp_path):
    test = tool_module(TEST)
    cfg = test.load_config(setup['configs']['tiny'])
    args = test.parse_args([setup['configs']['tiny'], 'x.pth'])
    assert test.apply_args(cfg, args).work_dir == osp.join('./work_dirs', 'tiny', 'test')
    cfg = test.load_config(setup['configs']['tiny'], {'work_dir': 'runs/a'})
    assert test.apply_args(cfg, args).work_dir == osp.join('runs/a', 'test')


def test_resume_without_a_readable_last_checkpoint_takes_the_newest_epoch(tmp_path):
    from mmengine.config import Config
    train = tool_module(TRAIN)
    for name in ('epoch_2.pth', 'epoch_10.pth', 'epoch_9.pth'):
        (tmp_path / name).write_bytes(b'')
    for content in ('', str(tmp_path / 'epoch_11.pth')):  # killed while writing it; stale
        (tmp_path / 'last_checkpoint').write_text(content)
        cfg = Config(dict(resume=True, load_from=None, work_dir=str(tmp_path)))
        assert train.resume_checkpoint(cfg) == str(tmp_path / 'epoch_10.pth') == cfg.load_from
