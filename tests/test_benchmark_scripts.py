"""The benchmark scripts' own logic: accounting and set-up (their timings are not tested)."""
import importlib.util
from pathlib import Path

import pytest
import torch

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet.analysis.complexity import model_complexity
from mmdet.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'benchmarks' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_breakdown_accounts_for_every_mac_and_names_group_widths():
    speed = load_script('backbone_speed')
    model = MODELS.build(dict(type='iResGroupFix', depth=50, base_channels=16)).eval()
    kinds = speed.breakdown(model, torch.randn(1, 3, 64, 64), repeats=1)
    macs = sum(m for _, m in kinds.values())
    assert macs == model_complexity(model, (3, 64, 64), convention='macs')['flops']
    # base 16: stage widths 64..512 with 64 groups -> 1, 2, 4, 8 channels per group
    grouped = sorted(k for k in kinds if 'grouped' in k)
    assert 'conv 3x3 s2 grouped (1 ch/group)' in grouped
    assert 'conv 3x3 s1 grouped (8 ch/group)' in grouped
    assert {'BatchNorm2d', 'MaxPool2d', 'ReLU', 'conv 7x7 s2', 'conv 1x1 s1'} <= set(kinds)
    assert all(ms > 0 for ms, _ in kinds.values())
    # hooks are removed afterwards
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_speed_allocator_environment():
    speed = load_script('backbone_speed')
    env = speed.allocator_env('auto', {'LD_PRELOAD': 'libx.so', 'A': '1'}, 'libtcmalloc.so.4', True)
    assert env['LD_PRELOAD'] == 'libtcmalloc.so.4 libx.so' and env['A'] == '1'
    assert env[speed.MALLOC_ENV].startswith('tcmalloc')
    env = speed.allocator_env('auto', {'GLIBC_TUNABLES': 'glibc.pthread.x=1'}, None, True)
    assert env['GLIBC_TUNABLES'] == 'glibc.pthread.x=1:' + speed.MALLOC_TUNABLES
    assert 'LD_PRELOAD' not in env
    # no re-run: the allocator as it is, no glibc, or the re-run has already happened
    assert speed.allocator_env('system', {}, 'libtcmalloc.so.4', True) is None
    assert speed.allocator_env('glibc-tuned', {}, 'libtcmalloc.so.4', False) is None
    assert speed.allocator_env('auto', {speed.MALLOC_ENV: 'tcmalloc'}, 'lib.so', True) is None
    with pytest.raises(SystemExit, match='apt-get install libtcmalloc-minimal4'):
        speed.allocator_env('tcmalloc', {}, None, True)
