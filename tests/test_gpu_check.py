"""``benchmarks/gpu_check.py`` on CPU: its gradient criterion and its flow (``--dry-run-cpu``).

The criterion compares CUDA with a float64 CPU run, with CPU float32's own error as the noise
floor. Here a second CPU float32 run stands in for CUDA: it must pass, and the same run with one
block's backward broken must fail.
"""
import copy
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

import iresnet_mmdet  # noqa: F401
from mmdet.registry import MODELS

from tool_runs import assert_one_line_error, tool_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'benchmarks', 'gpu_check.py')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')


def load_script():
    sys.path.insert(0, osp.dirname(SCRIPT))
    spec = importlib.util.spec_from_file_location('gpu_check', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args, **env):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env=tool_env(**env))


@pytest.fixture(scope='module')
def backbone():
    gpu_check = load_script()
    torch.manual_seed(0)
    model = MODELS.build(dict(type='iResNet', depth=18, base_channels=16))
    gpu_check.randomize_norms(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return gpu_check, model, x


def break_backward(model, scale):
    """The model with one block's backward scaled by ``scale`` (forward unchanged)."""
    broken = copy.deepcopy(model)
    broken.layer2[0].register_full_backward_hook(
        lambda module, grad_input, grad_output: tuple(
            None if g is None else g * scale for g in grad_input))
    return broken


def test_correct_backward_passes(backbone):
    gpu_check, model, x = backbone
    record = gpu_check.check_backbone('iResNet-18', model, x, 'cpu', factor=10., floor=1e-5)
    assert record['passed'], record
    for kind, worst in record['worst'].items():
        # the random projection keeps CPU float32 near its rounding error (the sum of the
        # train-mode outputs would cancel through BN: errors up to 1e-2)
        assert worst['cpu'] < 1e-5 and worst['device'] == worst['cpu'], kind


@pytest.mark.parametrize('scale', [1.001, 0.])
def test_broken_backward_fails(backbone, scale):
    """A block whose backward is off by 0.1% (or gives nothing) fails on the input gradient and
    on the parameters before it; the forward still passes."""
    gpu_check, model, x = backbone
    record = gpu_check.check_backbone('iResNet-18', model, x, 'cpu', factor=10., floor=1e-5,
                                      device_model=break_backward(model, scale))
    assert not record['passed']
    worst = record['worst']
    assert worst['eval']['passed'] and worst['train']['passed']
    assert not worst['input_grad']['passed'] and not worst['param_grad']['passed']
    assert worst['param_grad']['name'].startswith(('conv1', 'bn1', 'layer1', 'layer2.0'))


def test_verdict_threshold():
    gpu_check = load_script()
    cpu = {kind: {'a': 1e-4, 'b': 1e-9} for kind in gpu_check.KINDS}
    ok = {kind: {'a': 9e-4, 'b': 9e-6} for kind in gpu_check.KINDS}  # <= 10x, <= floor
    assert gpu_check.verdict(cpu, ok)[0]
    for name, value in (('a', 1.1e-3), ('b', 1.1e-5)):
        bad = copy.deepcopy(ok)
        bad['param_grad'][name] = value
        passed, worst = gpu_check.verdict(cpu, bad)
        assert not passed and worst['param_grad']['name'] == name


def test_dry_run_flow(tmp_path):
    """The whole flow on the CPU with a narrow detector: every part runs and writes its record."""
    narrow = tmp_path / 'narrow.py'
    narrow.write_text(f"_base_ = {DEMO_CONFIG!r}\nextra = (32, 32, 16, 16, 16)\n"
                      "model = dict(backbone=dict(base_channels=8), neck=dict(in_channels=(32, ),"
                      " out_channels=(32, ) + extra), bbox_head=dict(in_channels=(32, ) + extra))"
                      "\n")
    out = tmp_path / 'out'
    result = run('--dry-run-cpu', '--backbones', 'iResNet-18', '--rows', narrow, '--model', narrow,
                 '--batch', '2', '--iters', '2', '--warmup', '0', '--repeats', '1', '--out', out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / 'gpu_check.json').read_text())
    assert summary['passed'] and [b['name'] for b in summary['backbones']] == ['iResNet-18']
    assert summary['batched_head']['detections']['total'] > 0
    assert summary['amp_training']['iters'] == 2
    assert sorted({(r['head'], r['step'], r['mode']) for r in summary['speed']}) == sorted(
        (head, step, mode) for head in ('fixed', 'batched') for step in ('full', 'network')
        for mode in ('infer', 'train'))
    assert 'full step / network-only step' in result.stdout


def test_without_cuda(tmp_path):
    out = tmp_path / 'gpu'
    result = run('--out', out, CUDA_VISIBLE_DEVICES='')
    assert_one_line_error(result, 'no CUDA device', 'NVIDIA GPU', '--dry-run-cpu')
    assert not out.exists()


@pytest.mark.parametrize('args, message', [
    (['--backbones', 'iResNet-19'], '--backbones: unknown preset iResNet-19'),
    (['--rows', 'r50,r51'], "--rows: no config for 'r51'"),
    (['--batch', '1'], '--batch must be >= 2'),
])
def test_bad_input(tmp_path, args, message):
    """Checked before any work (the one-line form of the error: test_without_cuda)."""
    from iresnet_mmdet.errors import ToolError
    out = tmp_path / 'gpu'
    with pytest.raises(ToolError, match=message):
        load_script().main(['--dry-run-cpu', *args, '--out', str(out)])
    assert not out.exists()
