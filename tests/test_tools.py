"""tools/train.py, tools/test.py and torchrun on CPU, run as a user would (subprocesses).

Everything runs on a tiny synthetic dataset (16 train / 8 val images) with a narrow iResNet-18 cut
(base width 8) at SSD300's 300x300 input, so each run takes seconds on 2 CPU cores.
"""
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


def dist(tool, *args, processes=2):
    """``tools/dist_train.sh CONFIG N ...`` or ``tools/dist_test.sh CONFIG CKPT N ...`` (torchrun)."""
    positional = 1 if tool == 'train' else 2
    args = [*args[:positional], str(processes), *args[positional:]]
    return run(['bash', osp.join(ROOT, 'tools', f'dist_{tool}.sh'), *args],
               PORT=str(free_port()), PYTHON=sys.executable)


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


def test_two_cpu_processes_train_and_test(setup):
    work_dir = setup['base'] / 'work_ddp'
    result = dist('train', setup['configs']['tiny'], '--work-dir', str(work_dir),
                      '--cfg-options', 'train_cfg.max_epochs=1')
    check(result)
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


def test_resume_continues_from_first_checkpoint(setup, tmp_path):
    (tmp_path / 'die_hook.py').write_text(STOP_HOOK)
    config = tmp_path / 'dies.py'
    config.write_text(f"_base_ = {setup['configs']['tiny']!r}\n"
                      "custom_imports = dict(imports=['iresnet_mmdet', 'die_hook'], "
                      'allow_failed_imports=False)\n'
                      "custom_hooks = [dict(type='DieAfterFirstEpoch')]\n")
    work_dir = tmp_path / 'work'
    first = run([sys.executable, TRAIN, str(config), '--work-dir', str(work_dir)],
                PYTHONPATH=str(tmp_path))
    assert first.returncode == 17, first.stderr[-2000:]
    assert (work_dir / 'epoch_1.pth').is_file() and not (work_dir / 'epoch_2.pth').exists()

    # restart the same config without the crash, resuming from the work dir's latest checkpoint
    second = check(run([sys.executable, TRAIN, setup['configs']['tiny'], '--work-dir',
                        str(work_dir), '--resume']))
    logs = sorted(d for d in os.listdir(work_dir) if osp.isdir(work_dir / d))
    with open(work_dir / logs[-1] / f'{logs[-1]}.log') as f:
        resumed_log = f.read()
    assert 'resumed epoch: 1, iter: 4' in resumed_log
    assert 'Epoch(train) [1]' not in resumed_log  # epoch 1 is not trained again
    assert 'Epoch(train) [2][4/4]' in resumed_log
    assert torch.load(work_dir / 'epoch_2.pth')['meta']['epoch'] == 2
    assert 'epoch_2.pth' in second.stdout


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
