"""``benchmarks/data_pipeline.py``: a small real run, the reference pipeline, bad input."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import pytest

from tool_runs import assert_one_line_error, tool_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'benchmarks', 'data_pipeline.py')
CONFIG = osp.join(ROOT, 'configs', 'ssd300', 'ssd300_r50_8xb32-65e_coco.py')


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('data_pipeline', BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args):
    return subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True,
                          cwd=ROOT, env=tool_env(), timeout=600)


def test_small_run(tmp_path):
    out = tmp_path / 'pipeline.json'
    result = run(CONFIG, '--images', '6', '--size', '96x72', '--workers', '0,1', '--repeats', '2',
                 '--json', str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert [t['transform'] for t in record['transforms']] == [
        'SafeLoadImageFromFile', 'LoadAnnotations', 'FastMinIoURandomCrop', 'Resize',
        'FastRandomFlip', 'FastPhotoMetricDistortion', 'PackDetInputs']
    assert all(t['mmdet_ms'] > 0 and t['config_ms'] > 0 for t in record['transforms'])
    assert [(r['pipeline'], r['workers']) for r in record['loaders']] == [('config', 0),
                                                                          ('config', 1)]
    assert all(r['img_per_s'] > 0 and r['batch_size'] == 32 for r in record['loaders'])
    assert all(r['img_per_s'] == max(r['img_per_s_runs']) and len(r['img_per_s_runs']) == 2
               for r in record['loaders'])
    assert '| total |' in result.stdout and 'DataLoader img/s' in result.stdout
    assert record['loader_settings'] == dict(batch_size=32, collate_fn='packed_pseudo_collate',
                                             pin_memory=True, persistent_workers=True,
                                             prefetch_factor=None)


def test_loader_only_with_options(tmp_path):
    out = tmp_path / 'loader.json'
    result = run(CONFIG, '--images', '4', '--size', '96x72', '--workers', '1', '--loader-only',
                 '--cfg-options', 'train_dataloader.collate_fn.type=pseudo_collate', '--json',
                 str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record['transforms'] == [] and '| total |' not in result.stdout
    assert record['loader_settings']['collate_fn'] == 'pseudo_collate'
    assert [r['workers'] for r in record['loaders']] == [1]


def test_reference_pipeline_is_mmdets(bench):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    reference = bench.reference_pipeline(cfg.train_dataloader.dataset.pipeline)
    assert [step['type'] for step in reference] == [
        'LoadImageFromFile', 'LoadAnnotations', 'MinIoURandomCrop', 'Resize', 'RandomFlip',
        'PhotoMetricDistortion', 'PackDetInputs']
    assert 'skip_bad_images' not in reference[0]  # mmcv's loader does not take it
    assert reference[2]['min_ious'] == (0.1, 0.3, 0.5, 0.7, 0.9)


def test_coco_sizes(bench):
    sizes = bench.image_sizes(2000, None, 0)
    assert all(max(size) == 640 or size == (500, 375) for size in sizes)
    share = sum(size == (640, 480) for size in sizes) / len(sizes)
    assert 0.35 < share < 0.45
    assert bench.image_sizes(3, (96, 72), 0) == [(96, 72)] * 3


def test_bad_input_one_line(tmp_path):
    result = run(CONFIG, '--workers', '2,-1', '--json', str(tmp_path / 'x.json'))
    assert_one_line_error(result, "--workers '2,-1'")
    assert not (tmp_path / 'x.json').exists()


@pytest.mark.parametrize('args, fragment', [
    (['missing.py'], "config file 'missing.py' does not exist"),
    ([CONFIG, '--workers', ''], '--workers'),
    ([CONFIG, '--size', '640'], "--size '640'"),
    ([CONFIG, '--images', '0'], '--images 0'),
    ([CONFIG, '--repeats', '0'], '--repeats 0'),
    ([CONFIG, '--json', '{tmp}'], 'is a directory'),
    ([CONFIG, '--json', '{tmp}/no/x.json'], 'does not exist'),
    ([CONFIG, '--cfg-options', 'train_dataloader.batch_size'], 'KEY=VALUE'),
])
def test_bad_input_checked_first(bench, tmp_path, args, fragment):
    args = [a.replace('{tmp}', str(tmp_path)) for a in args]
    with pytest.raises(bench.ToolError, match=fragment.replace('.', r'\.')):
        bench.load_config(bench.parse_args(args).config, {})
