"""``benchmarks/detector_speed.py`` run as a user would, and ``tools/test.py --fuse-conv-bn``.

Timings themselves are not checked (they depend on the machine); what is checked: the records and
the printed ratios (re-derived here from the records), the variants' agreement with the eager
model, and one ``error:`` line with exit status 2 and no JSON file for bad input. The detectors are
the demo config cut to base width 8 and 16, so that each run takes seconds.
"""
import importlib.util
import json
import os.path as osp
import pickle
import re
import subprocess
import sys

import pytest
import torch

from tool_runs import assert_one_line_error, tool_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'benchmarks', 'detector_speed.py')
TEST = osp.join(ROOT, 'tools', 'test.py')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')
REQUIRED = ('config', 'mode', 'variant', 'step', 'head', 'device', 'batch', 'threads',
            'img_per_s', 'gflops')

NARROW = """
_base_ = {demo!r}
c4 = 4 * {width}  # iResNet-18 (basic blocks): C4 = 4 x base width
extra = (32, 32, 16, 16, 16)
model = dict(
    backbone=dict(base_channels={width}),
    neck=dict(in_channels=(c4, ), out_channels=(c4, ) + extra),
    bbox_head=dict(in_channels=(c4, ) + extra))
"""


def run(*args, **extra_env):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=tool_env(**extra_env))


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    base = tmp_path_factory.mktemp('speed')
    paths = []
    for width in (8, 16):
        path = base / f'ssd300_narrow{width}.py'
        path.write_text(NARROW.format(demo=DEMO_CONFIG, width=width))
        paths.append(path)
    return base, paths


@pytest.fixture(scope='module')
def benchmark(configs):
    base, paths = configs
    out = base / 'speed.json'
    result = run(BENCH, *paths, '--mode', 'both', '--variants', 'eager,fuse-conv-bn,onnxruntime',
                 '--batch', '2', '--threads', '1', '--warmup', '1', '--repeats', '2',
                 '--json', out, '--profile', '3')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out) as f:
        return json.load(f), result.stdout


def test_profile(benchmark):
    _, stdout = benchmark
    # one profile per PyTorch entry (2 configs x 2 steps x (2 infer + 1 train)), 3 ops each,
    # after the timed rounds
    heads = re.findall(r'^profile: (\S+) (infer|train) (\S+) \((full|network) step\), one step '
                       r'of \d+ ms', stdout, re.M)
    assert len(heads) == 12 and ('ssd300_narrow16', 'train', 'eager', 'network') in heads
    assert len(re.findall(r'^profile: \S+ onnxruntime: not profiled', stdout, re.M)) == 2
    last = stdout.split('profile: ')[-1].split('records written')[0]
    rows = [line for line in last.splitlines() if line.startswith('| ')]
    assert len(rows) == 1 + 3  # header + 3 ops
    assert all(float(row.split('|')[4]) >= 0 for row in rows[1:])


def test_records(configs, benchmark):
    from iresnet_mmdet.analysis.complexity import model_complexity
    _, paths = configs
    rows, _ = benchmark
    # fuse-conv-bn and onnxruntime are for inference only, onnxruntime for the full step only:
    # 2 configs x (3 infer + 1 train full steps, 2 infer + 1 train network-only steps)
    assert sorted((r['name'], r['mode'], r['variant'], r['step']) for r in rows) == sorted(
        (f'ssd300_narrow{w}', mode, variant, step) for w in (8, 16)
        for mode, variant, step in (
            ('infer', 'eager', 'full'), ('infer', 'fuse-conv-bn', 'full'),
            ('infer', 'onnxruntime', 'full'), ('train', 'eager', 'full'),
            ('infer', 'eager', 'network'), ('infer', 'fuse-conv-bn', 'network'),
            ('train', 'eager', 'network')))
    assert {r['head'] for r in rows} == {'config'}
    for r in rows:
        assert set(REQUIRED) <= set(r), r
        assert r['device'] == 'cpu' and r['batch'] == 2 and r['threads'] == 1
        assert r['repeats'] == 2 and r['amp'] is False
        assert r['img_per_s'] == pytest.approx(r['batch'] / r['seconds_per_batch'])
        if r['variant'] == 'eager':
            assert r['rel_diff'] == 0
        else:  # folded BNs and onnxruntime keep the outputs (random BN statistics)
            assert 0 < r['rel_diff'] <= 1e-4
    # the paper counter at the benchmark's 300x300
    for path in paths:
        gflops = {r['gflops'] for r in rows if r['config'] == str(path)}
        assert gflops == {model_complexity(str(path), (3, 300, 300), 'paper')['gflops']}


def test_printed_ratios(benchmark):
    rows, stdout = benchmark
    rows = [r for r in rows if r['step'] == 'full']  # the main tables
    table = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 9 and cells[0].startswith('ssd300_narrow'):
            table.setdefault(cells[1], []).append(cells)
    assert sorted(table) == ['eager', 'fuse-conv-bn', 'onnxruntime']
    by_key = {(r['name'], r['mode'], r['variant']): r for r in rows}
    modes = iter(['infer'] * 2 + ['train'] * 2)  # tables in mode order, configs in given order
    for cells in table['eager']:
        mode = next(modes)
        row = by_key[(cells[0], mode, 'eager')]
        first = by_key[('ssd300_narrow8', mode, 'eager')]
        time_x = first['img_per_s'] / row['img_per_s']
        flop_x = row['gflops'] / first['gflops']
        assert float(cells[2]) == pytest.approx(row['img_per_s'], abs=0.006)
        assert float(cells[3]) == pytest.approx(time_x, abs=0.006)
        assert float(cells[5]) == pytest.approx(flop_x, abs=0.0006)
        assert float(cells[6]) == pytest.approx(time_x / flop_x, abs=0.006)
    fused = by_key[('ssd300_narrow16', 'infer', 'fuse-conv-bn')]
    eager = by_key[('ssd300_narrow16', 'infer', 'eager')]
    speed = [c for c in table['fuse-conv-bn'] if c[0] == 'ssd300_narrow16'][0][7]
    assert float(speed) == pytest.approx(fused['img_per_s'] / eager['img_per_s'], abs=0.006)


def test_printed_overhead(benchmark):
    """The full step beside the network-only step: img/s of both and their ratio, per (config,
    mode, variant) timed both ways."""
    rows, stdout = benchmark
    table = stdout.split('full step / network-only step (')[1].split('\n\n')[0]
    cells = [[c.strip() for c in line.strip('|').split('|')] for line in table.splitlines()
             if line.startswith('| ssd300_narrow')]
    assert len(cells) == 2 * 3  # infer eager, infer fuse-conv-bn, train eager per config
    records = {(r['name'], r['mode'], r['variant'], r['step']): r for r in rows}
    for name, mode, variant, network_ips, full_ips, ratio in cells:
        network = records[(name, mode, variant, 'network')]
        full = records[(name, mode, variant, 'full')]
        assert float(network_ips) == pytest.approx(network['img_per_s'], abs=0.006)
        assert float(full_ips) == pytest.approx(full['img_per_s'], abs=0.006)
        assert float(ratio) == pytest.approx(full['img_per_s'] / network['img_per_s'], abs=0.006)
    # the network-only inference step skips the post-processing: it is faster
    assert all(float(c[5]) < 1 for c in cells if c[1] == 'infer')


def test_heads_in_one_run(configs, tmp_path):
    """--heads fixed,batched: the same detector with mmdet's per-image head code and with the
    batched head in one run (their equality: tests/test_batched_ssd_head.py)."""
    out = tmp_path / 'speed.json'
    result = run(BENCH, configs[1][0], '--heads', 'fixed,batched', '--steps', 'full', '--batch',
                 '2', '--threads', '1', '--warmup', '0', '--repeats', '1', '--json', out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert sorted((r['head'], r['mode'], r['step']) for r in rows) == [
        ('batched', 'infer', 'full'), ('fixed', 'infer', 'full')]
    for head in ('fixed', 'batched'):
        assert f'| ssd300_narrow8 ({head} head) | eager |' in result.stdout
    assert 'full step / network-only step' not in result.stdout  # --steps full
    spec = importlib.util.spec_from_file_location('detector_speed', BENCH)
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    for head, head_type in (('fixed', 'FixedSSDHead'), ('batched', 'BatchedSSDHead'),
                            ('config', 'BatchedSSDHead')):
        cfg = speed.load_model_config(str(configs[1][0]), head)
        assert cfg.model.bbox_head.type == head_type


@pytest.mark.parametrize('args, fragments', [
    (['configs/ssd300/no_such_config.py'], ['no_such_config.py', 'no such file']),
    (['mmdet::ssd/ssd301_coco.py'], ['ssd301_coco.py', 'no such config in mmdet']),
    (['--variants', 'eager,compiled'], ["unknown variant 'compiled'", 'compile+channels-last']),
    (['--amp'], ['--amp is for --device cuda only']),
    (['--variants', 'compile+onnxruntime'], ["variant 'compile+onnxruntime'",
                                             'combines with fuse-conv-bn only']),
    (['--batch', '1', '--mode', 'train'], ['--batch 1 cannot train', '--batch 2 or more']),
    (['--steps', 'full,all'], ["--steps 'full,all'", 'full, network']),
    (['--heads', 'batch'], ["--heads 'batch'", 'config, fixed, batched']),
    (['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '--heads', 'fixed'],
     ['--heads fixed', 'retinanet_r50_fpn_1x_coco has no SSD head', '--heads config']),
])
def test_bad_input(configs, tmp_path, args, fragments):
    if not any(a.endswith('.py') for a in args):
        args = [configs[1][0], *args]
    out = tmp_path / 'speed.json'
    result = run(BENCH, *args, '--warmup', '0', '--repeats', '1', '--json', out)
    assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_onnxruntime_leaves_out_two_stage_detectors(tmp_path):
    out = tmp_path / 'speed.json'
    result = run(BENCH, 'configs/faster_rcnn/faster-rcnn_iresnet50_fpn_1x_coco.py', '--variants',
                 'onnxruntime', '--warmup', '0', '--repeats', '1', '--size', '64', '--json', out)
    assert 'note: faster-rcnn_iresnet50_fpn_1x_coco not timed with onnxruntime' in result.stdout
    assert 'supports single-stage detectors' in result.stdout
    assert_one_line_error(result, 'nothing to time')
    assert not out.exists()


def test_cuda_without_cuda(configs, tmp_path):
    out = tmp_path / 'speed.json'
    result = run(BENCH, configs[1][0], '--device', 'cuda', '--json', out, CUDA_VISIBLE_DEVICES='')
    assert_one_line_error(result, '--device cuda', 'no CUDA device', '--device cpu')
    assert not out.exists()


def test_compile_variant_without_a_compiler(configs, tmp_path):
    out = tmp_path / 'speed.json'
    result = run(BENCH, configs[1][0], '--variants', 'eager,compile', '--json', out,
                 CXX='/bin/false', TORCHINDUCTOR_CACHE_DIR=str(tmp_path / 'empty_cache'))
    assert_one_line_error(result, 'variant compile', 'InvalidCxxCompiler', 'drop it')
    assert not out.exists()


# ---- tools/test.py --fuse-conv-bn on the demo detector ------------------------------------------


def random_demo_checkpoint(path):
    """The demo detector with random weights and random BN statistics (a fresh BN is nearly the
    identity in eval mode, which would hide a wrong folding)."""
    from iresnet_mmdet.analysis.complexity import build_from_config
    torch.manual_seed(0)
    model = build_from_config(DEMO_CONFIG)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    torch.save({'state_dict': model.state_dict()}, path)


def test_tools_test_fuse_conv_bn_on_the_demo(tmp_path):
    data = tmp_path / 'data'
    assert run(osp.join(ROOT, 'tools', 'data', 'make_synthetic_coco.py'), '--out', data,
               '--num-train', '1', '--num-val', '4', '--image-size', '128').returncode == 0
    ckpt = tmp_path / 'random.pth'
    random_demo_checkpoint(ckpt)
    root = f'{data}/'
    options = ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
               f'test_evaluator.ann_file={root}annotations/instances_val.json']
    preds = {}
    for name, flags in (('plain', []), ('fused', ['--fuse-conv-bn'])):
        result = run(TEST, DEMO_CONFIG, ckpt, '--work-dir', tmp_path / name, '--out',
                     tmp_path / f'{name}.pkl', *flags, *options)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        with open(tmp_path / f'{name}.pkl', 'rb') as f:
            preds[name] = {p['img_id']: p['pred_instances'] for p in pickle.load(f)}
    log = result.stdout + result.stderr
    match = re.search(r'FuseConvBNHook: BNs folded into their convs \(outputs change by '
                      r'([0-9.e+-]+) relative\)', log)
    assert match and float(match.group(1)) <= 1e-4, log[-3000:]
    assert sorted(preds['fused']) == sorted(preds['plain']) and len(preds['plain']) == 4
    for img_id, ref in preds['plain'].items():
        got = preds['fused'][img_id]
        assert len(ref['scores']) > 50
        top = min(len(ref['scores']), len(got['scores']), 50)
        assert torch.allclose(got['scores'][:top], ref['scores'][:top], atol=1e-4)
        # every fused top detection is an unfused one: same label, box within 1e-2 px
        for box, label in zip(got['bboxes'][:top], got['labels'][:top]):
            same = (ref['labels'] == label) & ((ref['bboxes'] - box).abs().amax(1) <= 1e-2)
            assert same.any(), (img_id, box, label)

