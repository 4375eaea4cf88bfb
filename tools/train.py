"""Train a detector: mmdet's ``tools/train.py`` command line, on CPU or GPUs, one or many processes.

Examples::

    .venv/bin/python tools/train.py configs/demo/ssd300_iresnet18_synthetic.py
    .venv/bin/python tools/train.py CONFIG --compile  # torch.compile
    .venv/bin/python tools/train.py CONFIG --work-dir work_dirs/run1 --resume  # latest checkpoint
    .venv/bin/python tools/train.py CONFIG --resume work_dirs/run1/epoch_3.pth
    bash tools/dist_train.sh CONFIG 2  # 2 processes/GPUs

Differences to mmdet's script, all for the stack this project pins (torch 2.13, mmengine 0.10.7):

* ``--launcher pytorch`` without CUDA runs on CPU with gloo and a DDP wrapper without
  ``device_ids`` (``iresnet_mmdet.engine.dist``); with CUDA it is mmengine's NCCL path unchanged.
* Checkpoints load with ``torch.load(weights_only=True)``: the few classes mmengine stores are
  allow-listed (``iresnet_mmdet.checkpoint``), nothing else is.
* ``--compile`` (or ``compile = True`` in the config) compiles the backbone, neck and head
  forward with ``torch.compile`` (``iresnet_mmdet.engine.compile.CompileHook``), not the whole
  train step as mmengine would (that crashes in dynamo on the optimizer). Checkpoints keep their
  ordinary keys; without a working C++ compiler the run says so once and stays eager.
* Checkpoints are written atomically and ``--resume`` continues bit-identically to an
  uninterrupted run (``iresnet_mmdet.engine.resume``: every epoch seeded from the seed and the
  epoch number; the training loader's workers start once per epoch, ``persistent_workers`` off).
* Bad input ends with one ``error:`` line and exit status 2 (``IRESNET_MMDET_DEBUG=1`` for the
  traceback), before any work: the config, the ``--cfg-options`` types, the work dir (writable),
  the backbone's ``init_cfg`` checkpoint (exists and fits), the data; the checkpoint given to
  ``--resume`` must load and fit the model. ``--check`` runs these checks only, and checks every
  image of the datasets (``tools/dist_train.sh`` runs it before starting the processes).
"""
import argparse
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # repository root
# mmengine 0.10.7 imports pkg_resources, which setuptools >= 80 flags as deprecated on every run
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

# importing the package registers its modules in mmdet's registries
from iresnet_mmdet.atomic import check_output  # noqa: E402
from iresnet_mmdet.checkpoint import check_fits, load_checkpoint  # noqa: E402
from iresnet_mmdet.config import load_config  # noqa: E402
from iresnet_mmdet.engine.data_checks import check_data  # noqa: E402
from iresnet_mmdet.engine.model_checks import check_model_types  # noqa: E402
from iresnet_mmdet.engine.pretrained_checks import check_pretrained  # noqa: E402
from iresnet_mmdet.engine.resume import make_resumable  # noqa: E402
from iresnet_mmdet.errors import ToolError, launcher_rank, run_main  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training (CUDA only)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone, neck and head forward (CompileHook)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr linearly to the real total batch size '
                        '(auto_scale_lr.base_batch_size of the config)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest checkpoint in the '
        'work dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, "key=value" pairs, e.g. train_cfg.max_epochs=2 '
        '"model.backbone.depth=18"')
    parser.add_argument('--check', action='store_true',
                        help='only check the config, options, work dir, init checkpoint and data '
                        '(every image file) as the run would, then exit: tools/dist_train.sh does '
                        'this before starting processes')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_args(cfg, args):
    """Apply the command line to the config, as mmdet's tools/train.py does."""
    import torch
    from iresnet_mmdet.engine.compile import add_compile_hook
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if not torch.cuda.is_available():
            raise ToolError('--amp needs a CUDA GPU (mmengine AmpOptimWrapper); on CPU train '
                            'without --amp')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP training is already enabled in your config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ToolError('--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in '
                            'the config')
        cfg.auto_scale_lr.enable = True
    add_compile_hook(cfg, args.compile)
    make_resumable(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume


def resume_checkpoint(cfg):
    """The checkpoint a resumed run will load, or None.

    Without a path, the work dir's ``last_checkpoint`` names it; where that file is empty or names
    a missing file (a run killed while writing it), the newest ``epoch_<N>.pth`` is taken, and
    ``cfg.load_from`` is set so that mmengine resumes from the same file.
    """
    from mmengine.runner import find_latest_checkpoint
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    if not osp.isdir(cfg.work_dir):
        return None
    latest = find_latest_checkpoint(cfg.work_dir)
    if not latest or not osp.isfile(latest):
        latest = newest_epoch_checkpoint(cfg.work_dir)
    if latest:
        cfg.load_from = latest
    return latest


def newest_epoch_checkpoint(work_dir):
    """The ``epoch_<N>.pth`` of a work dir with the largest N, or None."""
    import glob
    import re
    epochs = {}
    for path in glob.glob(osp.join(glob.escape(work_dir), 'epoch_*.pth')):
        found = re.search(r'epoch_(\d+)\.pth$', path)
        if found:
            epochs[int(found.group(1))] = path
    return epochs[max(epochs)] if epochs else None


def preflight(cfg, args):
    """Everything the run would fail on, checked before it starts (all of it with ``--check``)."""
    check_model_types(cfg)
    where = '--work-dir' if args.work_dir else f"the work dir ('{cfg.work_dir}')"
    check_output(cfg.work_dir, where, ToolError, directory=True)
    check_pretrained(cfg)
    check_data(cfg, ['train', 'val'] if cfg.get('val_cfg') else ['train'],
               all_images=args.check)
    resume_from = resume_checkpoint(cfg)
    if resume_from and args.check:  # a run checks it once its model is built (check_fits)
        load_checkpoint(resume_from, label='--resume checkpoint')  # exists, loads safely
    return resume_from


def build_runner(cfg):
    from mmdet.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def report(runner):
    """Say where the checkpoints and logs are (main process only)."""
    from mmengine.runner import find_latest_checkpoint
    if launcher_rank() != 0:
        return
    last = find_latest_checkpoint(runner.work_dir)
    print(f'\nTraining finished. Work dir: {runner.work_dir}\n'
          f'  last checkpoint: {last}\n'
          f'  log:             {osp.join(runner.log_dir, runner.timestamp + ".log")}\n'
          f'  scalars (json):  {osp.join(runner.log_dir, "vis_data", "scalars.json")}',
          flush=True)


def main(argv=None):
    from iresnet_mmdet.engine.dist import setup_cpu_distributed
    from mmdet.utils import setup_cache_size_limit_of_dynamo

    args = parse_args(argv)
    # fewer repeated torch.compile compilations (as mmdet's train.py)
    setup_cache_size_limit_of_dynamo()
    cfg = load_config(args.config, args.cfg_options)
    apply_args(cfg, args)
    resume_from = preflight(cfg, args)
    if args.check:
        print(f'check passed: {args.config}')
        return 0
    try:
        setup_cpu_distributed(cfg, args.launcher)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    runner = build_runner(cfg)
    if resume_from:
        check_fits(runner.model, resume_from)
    runner.train()
    report(runner)
    return 0


if __name__ == '__main__':
    run_main(main)
