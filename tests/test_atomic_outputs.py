"""Outputs checked before the work and written atomically (iresnet_mmdet/atomic.py), atomic
training checkpoints and per-epoch seeds (iresnet_mmdet/engine/resume.py)."""
import errno
import os
import os.path as osp
import subprocess
import sys
import tempfile

import pytest
from mmengine.config import Config
from mmengine.fileio import get_file_backend

from iresnet_mmdet import atomic
from iresnet_mmdet.engine import resume
from iresnet_mmdet.errors import ToolError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


# ---- output_problem / check_output ---------------------------------------------------------------


def test_writable_outputs_pass_and_nothing_is_left(tmp_path):
    assert atomic.output_problem(tmp_path / 'new' / 'deeper' / 'out.json') is None
    assert atomic.output_problem(tmp_path / 'run', directory=True) is None
    assert list(tmp_path.iterdir()) == []  # the probe file is gone, no folder was made
    atomic.check_output(None, '--out', ToolError)  # option not given


def test_unwritable_outputs_are_named(tmp_path):
    (tmp_path / 'file').write_text('')
    cases = [(tmp_path, False, 'is a directory, not a file'),
             (tmp_path / 'file', True, 'is a file, not a directory'),
             (tmp_path / 'file' / 'out.json', False, 'is a file, so no folder can be made'),
             (tmp_path / 'file' / 'a' / 'b', True, 'is a file, so no folder can be made'),
             ('', False, 'empty')]
    for path, directory, message in cases:
        with pytest.raises(ToolError, match=f'^--out: .*{message}.*; choose another path$'):
            atomic.check_output(str(path), '--out', ToolError, directory=directory)


@pytest.mark.parametrize('code, message', [(errno.EROFS, 'is on a read-only file system'),
                                           (errno.EACCES, 'not writable (permission denied)')])
def test_read_only_and_forbidden_folders(tmp_path, monkeypatch, code, message):
    # root may write into a chmod 555 folder, so the refusal of the file system is simulated
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    assert message in atomic.output_problem(tmp_path / 'sub' / 'out.json')


def test_a_failed_write_keeps_the_result_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'gone').write_text('')  # where a folder was expected, e.g. deleted and replaced

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write('{"AP": 0.5}')

    with pytest.raises(ToolError, match='written to .*metrics.json instead') as caught:
        atomic.write_output(str(tmp_path / 'gone' / 'metrics.json'), write, ToolError)
    rescued = str(caught.value).split('written to ')[1].split(' instead')[0]
    with open(rescued) as f:
        assert f.read() == '{"AP": 0.5}'


# ---- atomic checkpoints ------------------------------------------------------------------------

_KILLED_DURING_SAVE = """
import os, sys
from iresnet_mmdet.engine import resume

class HalfThenKilled:
    def __init__(self, path, mode):
        self.file = open(path, mode)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.file.close()
    def write(self, data):
        self.file.write(data[:len(data) // 2])
        self.file.flush()
        os._exit(9)  # as kill -9: no clean-up

resume.open = HalfThenKilled  # the backend's writes open files through this name
resume.AtomicLocalBackend().put(b'new' * 1000, sys.argv[1])
"""


def test_a_checkpoint_save_killed_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / 'epoch_2.pth'
    backend = get_file_backend(str(target), backend_args=dict(backend='atomic_local'))
    backend.put(b'old', str(target))
    script = tmp_path / 'killed.py'
    script.write_text(_KILLED_DURING_SAVE)
    result = subprocess.run([sys.executable, str(script), str(target)], cwd=ROOT, timeout=120)
    assert result.returncode == 9
    assert target.read_bytes() == b'old'  # never a torn file under the checkpoint's name
    torn = [p for p in os.listdir(tmp_path) if p.startswith('.epoch_2.pth.')]
    assert len(torn) == 1  # the unfinished temporary file, removed by the next run:
    assert resume.remove_torn_checkpoints(str(tmp_path)) == [str(tmp_path / torn[0])]
    backend.put_text('new', str(target))
    assert target.read_text() == 'new' and sorted(os.listdir(tmp_path)) == ['epoch_2.pth',
                                                                           'killed.py']


def test_configs_save_checkpoints_atomically_with_per_epoch_seeds():
    for name in ('demo/ssd300_iresnet18_synthetic.py', 'ssd300/ssd300_iresnet50_8xb32-65e_coco.py'):
        cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
        args = cfg.default_hooks.checkpoint.backend_args
        assert isinstance(get_file_backend('x.pth', backend_args=args), resume.AtomicLocalBackend)
        assert dict(type='ExactResumeHook') in cfg.custom_hooks
    assert Config.fromfile(osp.join(
        ROOT, 'configs/demo/ssd300_iresnet18_synthetic.py')).train_dataloader.persistent_workers \
        is False
    # a config on mmdet's own runtime gets both from tools/train.py
    cfg = Config.fromfile(osp.join(ROOT, 'configs/faster_rcnn/faster-rcnn_iresnet50_fpn_1x_coco.py'))
    assert cfg.train_dataloader.persistent_workers
    resume.make_resumable(cfg)
    resume.make_resumable(cfg)  # idempotent
    assert [h['type'] for h in cfg.custom_hooks].count('ExactResumeHook') == 1
    assert cfg.default_hooks.checkpoint.backend_args == dict(backend='atomic_local')
    assert cfg.train_dataloader.persistent_workers is False


def test_epoch_seeds_differ_by_seed_epoch_and_rank():
    seeds = {resume.epoch_seed(seed, epoch, rank) for seed in (0, 1, 2**40)
             for epoch in range(20) for rank in range(4)}
    assert len(seeds) == 3 * 20 * 4 and all(0 <= s < 2**64 for s in seeds)
    assert resume.epoch_seed(0, 3, 1) == resume.epoch_seed(0, 3, 1)
