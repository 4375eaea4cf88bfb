"""The benchmark scripts' own logic: accounting and set-up (their timings are not tested)."""
import importlib.util
from pathlib import Path

import pytest
import torch

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet.analysis.complexity import model_complexity
from iresnet_mmdet.errors import ToolError
from mmdet.registry import MODELS

from backbone_checks import per_group_conv

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
    with pytest.raises(ToolError, match='apt-get install libtcmalloc-minimal4'):
        speed.allocator_env('tcmalloc', {}, None, True)


@pytest.mark.parametrize('groups,stride', [(8, 1), (8, 2), (4, 1)])
def test_grouped_conv_formulations_equal_per_group_dense_convs(groups, stride):
    gconv = load_script('grouped_conv')
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 9, 11, generator=gen, requires_grad=True)
    weight = torch.randn(32, 32 // groups, 3, 3, generator=gen, requires_grad=True)
    expected = per_group_conv(x, weight, groups, stride)
    grads = torch.autograd.grad(expected.square().sum(), (x, weight))
    funcs = gconv.formulations(groups, stride, merges=(2, 4, 3))
    assert set(funcs) == {'onednn', 'channels-last', 'merge-2', 'merge-4', 'unfold-matmul'}
    for name, func in funcs.items():
        out = func(x, weight)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, msg=name)
        got = torch.autograd.grad(out.square().sum(), (x, weight))
        for g, e in zip(got, grads):  # the merged weight's zero blocks get no gradient
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4, msg=name)


def test_grouped_conv_shapes_of_a_backbone():
    gconv = load_script('grouped_conv')
    model = MODELS.build(dict(type='iResGroupFix', depth=50, base_channels=16))
    shapes = gconv.grouped_conv_shapes(model, batch=2, size=64)
    # no stem max-pool: the stem halves 64 to 32 and all four stages have stride 2 (on the first
    # block's grouped 3x3); widths 64..512 in 64 groups; 3-4-6-3 blocks
    expected = {}
    size = 32
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        expected[((2, width, size, size), width, 64, 2)] = 1
        size //= 2
        expected[((2, width, size, size), width, 64, 1)] = blocks - 1
    assert shapes == expected
    assert not any(m._forward_pre_hooks for m in model.modules())


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / 'analysis' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_options_and_outputs_are_refused_before_the_work(tmp_path):
    (tmp_path / 'a_file').write_text('')
    under_file = str(tmp_path / 'a_file' / 'out.json')
    smoke, memory, gconv = (load_script(n) for n in
                            ('cifar_smoke_train', 'cifar_depth_memory', 'grouped_conv'))
    evaluation = load_tool('benchmark_eval')
    cases = [(smoke.main, ['--steps', '0'], '--steps 0: give 1 or more'),
             (smoke.main, ['--threads', '-3'], '--threads -3: give 1 or more'),
             (smoke.main, ['--lr', '-1'], '--lr -1: give a positive learning rate'),
             (smoke.main, ['--json', under_file], 'is a file, so no folder can be made'),
             (memory.main, ['--batch', '0'], '--batch 0: give 1 or more'),
             (gconv.main, ['--threads', '0', str(ROOT / 'configs' / 'ssd300' /
                                                   'ssd300_iresgroup50_8xb32-65e_coco.py')],
              '--threads 0: give 1 or more'),
             (evaluation.main, ['--images', '0'], '--images 0: give 1 or more'),
             (evaluation.main, ['--boxes-per-image', 'nan'], '--boxes-per-image nan'),
             (evaluation.main, ['--json', str(tmp_path)], 'is a directory, not a file')]
    for main, argv, message in cases:
        with pytest.raises(ToolError) as caught:
            main(argv)
        assert message in str(caught.value), (argv, str(caught.value))
