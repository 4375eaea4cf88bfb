"""tools/reproduce_table.py: the smoke run end to end (trained, interrupted, resumed, tested, the
table written with the figures of the metrics files), the cost estimate, the Slurm jobs, and bad
input (one error line, nothing started, nothing of a finished row written again).

References come from outside the code under test: the paper's figures from
tests/data/paper_tables.json, mmengine's own training logs, the annotation files, mmdet's model
built in the test, and the arithmetic of the docs' cost formula written out here.
"""
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from tool_runs import assert_one_line_error, tool_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL_PATH = osp.join(ROOT, 'tools', 'reproduce_table.py')
SMOKE_ROWS = {'ResNet-50': 'ssd300_r50_8xb32-65e_coco',
              'iResNet-50': 'ssd300_iresnet50_8xb32-65e_coco'}
FIGURES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')
with open(osp.join(ROOT, 'tests', 'data', 'paper_tables.json')) as _f:
    PAPER = json.load(_f)['ssd300_coco_val2017']['rows']


def _load_tool():
    spec = importlib.util.spec_from_file_location('reproduce_table_tool', TOOL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _load_tool()


def call(*argv):
    """Run the tool in this process; returns (exit status, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = TOOL.main([str(a) for a in argv])
    return status, out.getvalue()


def snapshot(folder):
    """Every file under ``folder``: (mtime_ns, sha256) by relative path."""
    files = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = osp.join(base, name)
            with open(path, 'rb') as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            files[osp.relpath(path, folder)] = (os.stat(path).st_mtime_ns, digest)
    return files


def row_snapshots(root):
    return {stem: snapshot(osp.join(root, stem)) for stem in SMOKE_ROWS.values()}


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    """The smoke run: first call stopped after the first row's first epoch (a simulated death of
    the run), second call resumes and finishes, third call finds everything finished."""
    root = tmp_path_factory.mktemp('smoke') / 'run'
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        for name, value in tool_env().items():
            mp.setenv(name, value)
        calls.append(call('--smoke', '--work-root', root, '--stop-after-epochs', 1))
        after_stop = snapshot(root)
        calls.append(call('--smoke', '--work-root', root))
        finished = row_snapshots(root)
        calls.append(call('--smoke', '--work-root', root))
    return dict(root=str(root), calls=calls, after_stop=after_stop, finished=finished)


def row_dir(smoke, name):
    return osp.join(smoke['root'], SMOKE_ROWS[name])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_text(path):
    with open(path) as f:
        return f.read()


def test_smoke_stop_leaves_a_resumable_row(smoke):
    status, out = smoke['calls'][0]
    assert status == 1 and 'stopped after 1 epochs' in out
    files = smoke['after_stop']
    r50 = SMOKE_ROWS['ResNet-50']
    assert f'{r50}/train/epoch_1.pth' in files and f'{r50}/train/last_checkpoint' in files
    assert f'{r50}/train/epoch_2.pth' not in files
    assert not any(path.endswith('metrics.json') for path in files)
    assert not any(path.startswith(SMOKE_ROWS['iResNet-50']) for path in files)
    assert 'reproduce_manifest.json' in files


def test_smoke_resumes_tests_and_finishes(smoke):
    status, out = smoke['calls'][1]
    assert status == 0, out
    assert 'ResNet-50: training resuming from epoch_1.pth' in out
    # mmengine's own log of the resumed training: it loaded epoch 1 and trained epoch 2 only
    resumed = read_text(osp.join(row_dir(smoke, 'ResNet-50'), 'logs', 'train-2.log'))
    assert 'resumed epoch: 1' in resumed
    assert 'Epoch(train) [2]' in resumed and 'Epoch(train) [1]' not in resumed
    fresh = read_text(osp.join(row_dir(smoke, 'iResNet-50'), 'logs', 'train-1.log'))
    assert 'Epoch(train) [1]' in fresh and 'Epoch(train) [2]' in fresh
    for name in SMOKE_ROWS:
        folder = row_dir(smoke, name)
        assert osp.isfile(osp.join(folder, 'train', 'epoch_2.pth'))
        # the finished row's metrics are the test's, as tools/test.py wrote them
        assert read_json(osp.join(folder, 'metrics.json')) == \
            read_json(osp.join(folder, 'test', 'metrics.json'))
        attempts = [json.loads(line) for line in
                    read_text(osp.join(folder, 'logs', 'attempts.jsonl')).splitlines()]
        assert [a['exit_status'] for a in attempts] == [0] * len(attempts)
        assert all('--auto-scale-lr' in a['command'] for a in attempts if a['step'] == 'train')


def parse_markdown(text):
    """Table lines -> {Backbone cell: [cells]} (the header and the rule left out)."""
    rows = {}
    for line in text.strip().splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        rows[cells[0]] = cells[1:]
    return rows


def expected_cells(fractions, paper_row):
    """Our, the paper's and the difference cells of the twelve figures, written out here."""
    ours, published, diff = [], [], []
    for name in FIGURES:
        value, paper_value = fractions[name], paper_row[name]
        published.append(f'{paper_value:.2f}')
        if value == -1:
            ours.append('n/a')
            diff.append('-')
            continue
        ours.append(f'{100 * value:.2f}')
        delta = round(float(ours[-1]) - paper_value, 2)
        diff.append('0.00' if delta == 0 else f'{delta:+.2f}')
    return ours, published, diff


def check_table(root, metrics_by_row):
    """table.md, table.csv and results.json against the metrics files and the paper."""
    md = parse_markdown(read_text(osp.join(root, 'table.md')))
    csv_rows = [line.split(',') for line in read_text(osp.join(root, 'table.csv')).splitlines()]
    assert {row[0]: row[1:] for row in csv_rows[1:]} == {
        name: [c if c != '-' else '' for c in cells] for name, cells in md.items()}
    results = {row['name']: row for row in read_json(osp.join(root, 'results.json'))['rows']}
    for name, metrics in metrics_by_row.items():
        fractions = {n: metrics[f'coco/bbox_{n}'] for n in FIGURES}
        ours, published, diff = expected_cells(fractions, PAPER[name])
        assert md[name][:12] == ours
        assert md[f'{name} (paper)'] == published + [f'{PAPER[name]["params_M"]:.2f}',
                                                      f'{PAPER[name]["GFLOPs"]:.2f}']
        assert md[f'{name} diff (ours - paper)'][:12] == diff
        assert results[name]['fractions'] == fractions
        assert results[name]['ours'] == {**{n: (-1.0 if v == -1 else 100 * v)
                                            for n, v in fractions.items()},
                                         'params': results[name]['params'],
                                         'gflops': results[name]['gflops']}
        assert results[name]['status'] == 'finished'
    return results


def test_table_and_json_hold_the_metrics_files(smoke):
    metrics = {name: read_json(osp.join(row_dir(smoke, name), 'metrics.json'))
               for name in SMOKE_ROWS}
    results = check_table(smoke['root'], metrics)
    # params of the smoke model, counted here from mmdet's own model
    from mmdet.registry import MODELS
    from mmengine.config import Config
    config = osp.join(smoke['root'], 'configs', f"{SMOKE_ROWS['ResNet-50']}_smoke.py")
    model = MODELS.build(Config.fromfile(config).model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert results['ResNet-50']['params'] == pytest.approx(params, rel=1e-12)


def test_collect_writes_the_figures_of_the_metrics_files(smoke, tmp_path):
    """Non-zero figures (the smoke's are 0): a copy of the run with other metrics files."""
    root = tmp_path / 'copy'
    shutil.copytree(smoke['root'], root)
    metrics = {}
    for index, name in enumerate(SMOKE_ROWS):
        values = [0.1234 + 0.0517 * i + 0.1 * index for i in range(len(FIGURES))]
        values[5] = -1.0  # AP L: no large ground truth
        metrics[name] = {f'coco/bbox_{n}': v for n, v in zip(FIGURES, values)}
        with open(root / SMOKE_ROWS[name] / 'metrics.json', 'w') as f:
            json.dump(metrics[name], f)
    status, out = call('--collect', '--work-root', root)
    assert status == 0, out
    check_table(str(root), metrics)


def test_rerun_skips_finished_rows_and_writes_nothing_of_them(smoke):
    status, out = smoke['calls'][2]
    assert status == 0
    assert out.count('finished, skipped') == 2 and '  $ ' not in out
    assert row_snapshots(smoke['root']) == smoke['finished']


def test_cost_from_the_measured_speed(smoke):
    first, second = smoke['calls'][0][1], smoke['calls'][1][1]
    assert 'measuring img/s' in first and '--device cpu' in first
    assert 'measuring img/s' not in second  # the first call's measurement is kept
    speed = read_json(osp.join(smoke['root'], 'speed.json'))['rows']
    data = osp.join(smoke['root'], 'data', 'annotations')
    train = read_json(osp.join(data, 'instances_train.json'))
    train_images = len({a['image_id'] for a in train['annotations']})
    val_images = len(read_json(osp.join(data, 'instances_val.json'))['images'])
    results = {row['name']: row for row in read_json(osp.join(smoke['root'],
                                                               'results.json'))['rows']}
    for name in SMOKE_ROWS:
        # 2 epochs, no validation during training, 1 test
        seconds = 2 * train_images / speed[name]['train'] + val_images / speed[name]['infer']
        assert results[name]['estimate']['gpu_hours'] == pytest.approx(seconds / 3600)
        assert results[name]['estimate']['train_img_per_s'] == speed[name]['train']


@pytest.fixture
def fake_coco(tmp_path, monkeypatch):
    """A working directory with a minimal COCO layout under data/coco and the ImageNet checkpoints
    of the ResNet-50 and iResNet-50 rows (empty files: only their existence is checked)."""
    monkeypatch.chdir(tmp_path)
    for split in ('train2017', 'val2017'):
        os.makedirs(f'data/coco/{split}')
        open(f'data/coco/{split}/1.jpg', 'wb').close()
        os.makedirs('data/coco/annotations', exist_ok=True)
        with open(f'data/coco/annotations/instances_{split}.json', 'w') as f:
            json.dump({'images': [{'id': 1, 'file_name': '1.jpg', 'width': 640, 'height': 480}],
                       'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1, 'iscrowd': 0,
                                        'bbox': [10, 10, 50, 50], 'area': 2500}],
                       'categories': [{'id': 1, 'name': 'person'}]}, f)
    os.makedirs('checkpoints')
    for arch in ('resnet50', 'iresnet50'):
        open(f'checkpoints/{arch}.pth', 'wb').close()
    return tmp_path


SLURM = ('--launcher', 'slurm', '--partition', 'gpu', '--gpus', 16, '--rows', 'ResNet-50',
         'iResNet-50', '--img-per-s', 133, '--infer-img-per-s', 328)


def test_dry_run_prints_data_cost_and_slurm_jobs(fake_coco):
    status, out = call(*SLURM, '--dry-run')
    assert status == 0, out
    for path in ('data/coco/train2017/', 'data/coco/val2017/',
                 'data/coco/annotations/instances_train2017.json',
                 'data/coco/annotations/instances_val2017.json'):
        assert f'ok      {path}\n' in out
    # 65 epochs of the 117,266 annotated train2017 images, 13 validations + 1 test of 5,000
    gpu_hours = (65 * 117266 / 133 + 14 * 5000 / 328) / 3600
    assert f'| ResNet-50 | new | 133.0 | 328.0 | {gpu_hours:.2f} | {gpu_hours / 16:.2f} |' in out
    assert f'| total | | | | {2 * gpu_hours:.2f} | {2 * gpu_hours / 16:.2f} |' in out
    jobs = out.split('#!/usr/bin/env bash')[1:]
    assert len(jobs) == 3  # two rows, then the table
    row_job = jobs[0]
    for line in ('#SBATCH --partition=gpu', '#SBATCH --nodes=2', '#SBATCH --ntasks-per-node=8',
                 '#SBATCH --gres=gpu:8'):
        assert line in row_job
    train = next(line for line in row_job.splitlines() if 'tools/train.py' in line).split()
    assert train[:2] == ['srun', '--kill-on-bad-exit=1']
    for option in ('--launcher', 'slurm', '--auto-scale-lr', '--resume', '--amp'):
        assert option in train
    assert 'configs/ssd300/ssd300_r50_8xb32-65e_coco.py' in ' '.join(train)
    test = next(line for line in row_job.splitlines() if 'tools/test.py' in line).split()
    assert '--ntasks=1' in test and test[test.index('--metrics-out') + 1].endswith(
        'ssd300_r50_8xb32-65e_coco/test/metrics.json')
    assert '--collect' in jobs[2]
    assert not osp.exists('work_dirs'), 'a dry run writes nothing'


@pytest.mark.parametrize('gpus', [1, 8])
def test_dry_run_on_this_node_trains_with_torchrun_for_several_gpus(fake_coco, monkeypatch, gpus):
    import torch
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 8)  # a node with 8 GPUs
    status, out = call('--gpus', gpus, '--rows', 'ResNet-50', '--dry-run', '--img-per-s', 133)
    assert status == 0, out
    train = next(line for line in out.splitlines() if 'tools/train.py' in line or
                 'tools/dist_train.sh' in line).split()
    row = osp.join(str(fake_coco), 'work_dirs', 'reproduce_ssd300', 'ssd300_r50_8xb32-65e_coco')
    launch = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh')] if gpus > 1 else \
        [sys.executable, osp.join(ROOT, 'tools', 'train.py')]
    assert train[1:] == launch + [osp.join(ROOT, 'configs', 'ssd300',
                                           'ssd300_r50_8xb32-65e_coco.py')] + \
        ([str(gpus)] if gpus > 1 else []) + ['--work-dir', osp.join(row, 'train'),
                                             '--auto-scale-lr', '--resume', '--amp']
    # training only (no --infer-img-per-s): 65 epochs of 117,266 images at 133 img/s
    gpu_hours = 65 * 117266 / 133 / 3600
    assert f'| ResNet-50 | new | 133.0 | - | {gpu_hours:.2f} | {gpu_hours / gpus:.2f} |' in out


@pytest.fixture
def fake_slurm(fake_coco, monkeypatch):
    """``sbatch`` and ``squeue`` stand-ins on PATH: sbatch logs its arguments and prints job ids
    101, 102, ...; squeue lists the ids written to the ``queue`` file."""
    bin_dir = fake_coco / 'bin'
    bin_dir.mkdir()
    log, queue = fake_coco / 'sbatch.log', fake_coco / 'queue'
    (bin_dir / 'sbatch').write_text(
        f'#!/bin/sh\necho "$@" >> {log}\necho $(( $(wc -l < {log}) + 100 ))\n')
    (bin_dir / 'squeue').write_text(f'#!/bin/sh\ncat {queue} 2>/dev/null\n')
    for name in ('sbatch', 'squeue'):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv('PATH', f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log, queue


def test_slurm_submits_one_job_per_row_then_the_table(fake_slurm):
    log, queue = fake_slurm
    status, out = call(*SLURM)
    assert status == 0, out
    submitted = log.read_text().splitlines()
    assert len(submitted) == 3
    assert submitted[2].startswith('--parsable --dependency=afterany:101:102 ')
    scripts = [line.split()[-1] for line in submitted]
    for script in scripts:
        assert subprocess.run(['bash', '-n', script]).returncode == 0
    assert 'tools/train.py' in read_text(scripts[0]) and '--collect' in read_text(scripts[2])
    # the rows' jobs are still queued: a second call does not submit them again
    queue.write_text('101\n102\n')
    status, out = call(*SLURM)
    assert status == 0 and out.count('is queued or running: not submitted again') == 2
    assert len(log.read_text().splitlines()) == 4  # only the table job again


def test_bad_input_no_coco(fake_coco):
    shutil.rmtree('data/coco/val2017')
    from iresnet_mmdet.errors import ToolError
    with pytest.raises(ToolError, match=r"no COCO at 'data/coco/': missing data/coco/val2017/"):
        call(*SLURM, '--dry-run')
    with pytest.raises(ToolError, match=r"no COCO at '.*elsewhere/': missing .*elsewhere/"
                                        r'train2017/.*give the right --data-root'):
        call(*SLURM, '--data-root', 'elsewhere', '--dry-run')
    assert not osp.exists('work_dirs')


def test_bad_input_missing_imagenet_checkpoint(fake_slurm):
    os.remove('checkpoints/iresnet50.pth')
    from iresnet_mmdet.errors import ToolError
    with pytest.raises(ToolError, match=r"row iResNet-50: ImageNet checkpoint "
                                        r"'checkpoints/iresnet50.pth' \(model.backbone.init_cfg\) "
                                        'does not exist'):
        call(*SLURM)
    assert not osp.exists('work_dirs') and not fake_slurm[0].exists()  # nothing submitted


def test_bad_input_more_gpus_than_visible(fake_coco):
    import torch
    from iresnet_mmdet.errors import ToolError
    wanted = torch.cuda.device_count() + 1
    with pytest.raises(ToolError, match=f'--gpus {wanted}, but PyTorch sees'):
        call('--gpus', wanted, '--rows', 'ResNet-50')
    assert not osp.exists('work_dirs')


def test_bad_input_row_not_in_the_paper(tmp_path, capsys, monkeypatch):
    # through the tool's run_main, as its command line runs it: exit status 2, one error line
    from iresnet_mmdet.errors import run_main
    monkeypatch.delenv('IRESNET_MMDET_DEBUG', raising=False)
    argv = ['--smoke', '--rows', 'iResNet-18', '--work-root', str(tmp_path / 'run')]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: TOOL.main(argv))
    captured = capsys.readouterr()
    result = subprocess.CompletedProcess(argv, exit_info.value.code, captured.out, captured.err)
    assert_one_line_error(result, "row 'iResNet-18' is not in the paper's SSD300 table",
                          'iResGroup-101')
    assert not (tmp_path / 'run').exists()


def test_bad_input_work_root_of_another_run(smoke, tmp_path):
    from iresnet_mmdet.errors import ToolError
    with pytest.raises(ToolError, match=r"holds a run with other settings \(cfg_options: \[\] "
                                        r"there, \['train_cfg.max_epochs=3'\] now\)"):
        call('--smoke', '--work-root', smoke['root'], '--cfg-options', 'train_cfg.max_epochs=3')
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('not a run')
    with pytest.raises(ToolError, match='is not empty and holds no reproduce_manifest.json'):
        call('--smoke', '--work-root', tmp_path / 'other')
    with pytest.raises(ToolError, match="--work-root: .*notes.txt' is a file, so no folder"):
        call('--smoke', '--work-root', tmp_path / 'other' / 'notes.txt' / 'run')
    assert row_snapshots(smoke['root']) == smoke['finished']


def test_bad_input_invalid_metrics_of_a_finished_row(smoke, tmp_path):
    root = tmp_path / 'copy'
    shutil.copytree(smoke['root'], root)
    metrics = root / SMOKE_ROWS['iResNet-50'] / 'metrics.json'
    metrics.write_text('{"coco/bbox_AP": 0.5}')
    before = snapshot(root / SMOKE_ROWS['iResNet-50'])
    from iresnet_mmdet.errors import ToolError
    with pytest.raises(ToolError, match=r'row iResNet-50: .*metrics.json.* move .* away'):
        call('--smoke', '--work-root', root)
    assert snapshot(root / SMOKE_ROWS['iResNet-50']) == before
