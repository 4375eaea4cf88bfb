"""Training that survives a crash: checkpoints written atomically, ``--resume`` bit-identical.

mmengine 0.10.7 writes a checkpoint in place (``open(path, 'wb')``), so a run killed during the
save leaves a torn ``epoch_N.pth``; and it seeds the random number generators once per run, so a
resumed run draws other augmentations than the uninterrupted one would have. Two pieces fix this:

* the ``'atomic_local'`` file backend (:class:`AtomicLocalBackend`): mmengine's local backend with
  every write going to a temporary file beside the target, then renamed
  (:func:`iresnet_mmdet.atomic.write_atomic`). ``CheckpointHook(backend_args=dict(
  backend='atomic_local'))`` saves through it: a checkpoint file exists only complete.
* :class:`ExactResumeHook`: the random state of each training epoch is a function of the run's
  seed, the epoch and the rank, not of what happened before. At the start of every epoch it seeds
  Python's ``random``, NumPy and torch from ``(seed, epoch, rank)``; the sampler shuffles from
  ``seed + epoch`` (mmengine's ``DefaultSampler``); the data loader's workers take torch's
  per-worker seeds, drawn from the reseeded torch generator when the epoch's workers start (instead
  of mmengine's fixed seeds, which repeat every epoch). Epoch ``e + 1`` of a run resumed from
  ``epoch_e.pth`` therefore draws exactly what the uninterrupted run drew, and with the model,
  optimizer, scheduler and message hub restored by mmengine the final weights are bit-identical
  (on the same hardware and thread count). The checkpoint records the seed and the scheme.

Workers that live across epochs (``persistent_workers=True``) keep their random streams in their
own processes, where no checkpoint can reach them: :func:`make_resumable` turns them off for the
training loader (workers then start once per epoch), and the hook warns where they are still on.
Exactness holds for epoch-based training (every config of this project): a checkpoint taken
inside an epoch (``IterBasedTrainLoop``) resumes with the epoch's seeds, not its mid-epoch state.
"""
import glob
import os
import os.path as osp
import random

import numpy as np
import torch
from mmengine.dist import get_rank, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..atomic import write_atomic

BACKEND = 'atomic_local'
SCHEME = 'iresnet_mmdet per-epoch seeds v1'
_META_KEY = 'exact_resume'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, writing every file atomically.

    ``put`` and ``put_text`` write to a temporary file in the target's folder and rename it, so a
    process killed during the write leaves the previous file (or none), never a torn one.
    Everything else (reading, listing, removing) is :class:`mmengine.fileio.LocalBackend`'s.
    """

    def put(self, obj, filepath):
        """Write bytes to ``filepath`` atomically (missing folders are created).

        Args:
            obj (bytes): The content.
            filepath (str or Path): The file.
        """
        def write(tmp):
            with open(tmp, 'wb') as f:
                f.write(obj)
        write_atomic(str(filepath), write)

    def put_text(self, obj, filepath, encoding='utf-8'):
        """Write text to ``filepath`` atomically.

        Args:
            obj (str): The text.
            filepath (str or Path): The file.
            encoding (str): Its encoding.
        """
        self.put(obj.encode(encoding), filepath)


register_backend(BACKEND, AtomicLocalBackend)


def epoch_seed(seed, epoch, rank):
    """The seed of every random number generator of one rank in one training epoch.

    Args:
        seed (int): The run's seed (``runner.seed``).
        epoch (int): The epoch about to start, counted from 0.
        rank (int): The process's rank.

    Returns:
        int: A 64-bit seed, well mixed (numpy's ``SeedSequence``), different for every
        ``(seed, epoch, rank)``.
    """
    words = np.random.SeedSequence([seed % 2**63, epoch, rank]).generate_state(2)
    return int(words[0]) << 32 | int(words[1])


def seed_everything(seed):
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA) in this process.

    Args:
        seed (int): A non-negative 64-bit seed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _uses_mmengine_worker_seeds(loader):
    func = getattr(loader.worker_init_fn, 'func', None)  # mmengine passes a functools.partial
    return getattr(func, '__module__', '').startswith('mmengine.')


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make every training epoch's random state a function of ``(seed, epoch, rank)``.

    See the module docstring. Use it with ``custom_hooks = [dict(type='ExactResumeHook')]``
    (``configs/_base_/default_runtime.py`` does; ``tools/train.py`` adds it to any config through
    :func:`make_resumable`). It runs last among the ``before_train_epoch`` hooks, right before the
    epoch's data loader starts.
    """

    priority = 'LOWEST'

    def before_train(self, runner):
        loader = runner.train_dataloader
        if loader.num_workers > 0 and _uses_mmengine_worker_seeds(loader):
            # torch then seeds random, numpy and torch in each worker from a base seed drawn from
            # this process's torch generator, which before_train_epoch has just reseeded
            loader.worker_init_fn = None
        if loader.num_workers > 0 and loader.persistent_workers:
            runner.logger.warning(
                'ExactResumeHook: the training loader keeps its workers across epochs '
                '(persistent_workers=True); their random state cannot be saved, so a resumed run '
                'will not repeat the uninterrupted one exactly. Set '
                'train_dataloader.persistent_workers=False (tools/train.py does).')
        if is_main_process():
            remove_torn_checkpoints(runner.work_dir, runner.logger)

    def before_train_epoch(self, runner):
        seed_everything(epoch_seed(runner.seed, runner.epoch, get_rank()))

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint.setdefault('meta', {})[_META_KEY] = dict(scheme=SCHEME, seed=runner.seed)

    def after_load_checkpoint(self, runner, checkpoint):
        if not getattr(runner, '_resume', False):  # a plain load_from
            return
        saved = (checkpoint.get('meta') or {}).get(_META_KEY)
        if not saved or saved.get('scheme') != SCHEME:
            runner.logger.warning(
                'ExactResumeHook: the checkpoint was written without per-epoch seeds (an older '
                'run or another config); training resumes, but not bit-identically to the run '
                'it came from.')


def remove_torn_checkpoints(work_dir, logger=None):
    """Delete the temporary files of checkpoint saves that a killed run left behind.

    Args:
        work_dir (str): The run's work dir.
        logger (logging.Logger, optional): Where to say what was removed.

    Returns:
        list[str]: The removed files (``.<name>.pth.<random>.part.pth``, see ``write_atomic``).
    """
    removed = []
    for path in sorted(glob.glob(osp.join(glob.escape(work_dir), '.*.pth.*.part.pth'))):
        try:
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
        if logger is not None:
            logger.info(f'removed {path}: an unfinished checkpoint save of a killed run')
    return removed


def make_resumable(cfg):
    """Set a training config up for atomic checkpoints and exact resume (in place).

    Adds :class:`ExactResumeHook` unless the config has it, saves checkpoints through the
    ``'atomic_local'`` backend unless the checkpoint hook names another one, and turns off
    ``persistent_workers`` of the training loader (see the module docstring).

    Args:
        cfg (mmengine.Config): The training config.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type') == 'ExactResumeHook' for h in hooks):
        hooks.append(dict(type='ExactResumeHook'))
    cfg.custom_hooks = hooks
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if (isinstance(checkpoint, dict) and not checkpoint.get('backend_args')
            and not checkpoint.get('file_client_args')):
        checkpoint['backend_args'] = dict(backend=BACKEND)
    loader = cfg.get('train_dataloader')
    if isinstance(loader, dict) and loader.get('persistent_workers'):
        loader['persistent_workers'] = False
