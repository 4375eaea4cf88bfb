"""The plan of a reproduction: for each chosen row, the config it runs, its state and its cost.

Making the plan runs every pre-flight check (:mod:`.checks`), so a plan that is made can start.
"""
import argparse
import os.path as osp
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from iresnet_mmdet.config import load_config
from iresnet_mmdet.errors import ToolError

from . import checks, smoke
from .cost import Estimate, Speed, Workload, estimate, innermost_dataset, workload
from .launch import LocalLauncher, SlurmLauncher, test_options, train_options
from .output import write_text
from .rows import FINISHED, INTERRUPTED, NEW, TESTED, Row, RowDirs, RowState, row_state
from .settings import Settings


@dataclass
class RowPlan:
    """One row of a run.

    Attributes:
        row: the paper's row.
        config: the config file that is trained and tested.
        cfg: that config, loaded with the run's options.
        cfg_options: the ``key=value`` options given to its training and test.
        dirs: its folders in the work root.
        state: where it stands.
        work: its workload.
        estimate: its cost, once the speed is known.
    """
    row: Row
    config: str
    cfg: object
    cfg_options: List[str]
    dirs: RowDirs
    state: RowState
    work: Workload
    estimate: Optional[Estimate] = None

    @property
    def max_epochs(self) -> int:
        return self.work.epochs


@dataclass
class Plan:
    """A whole run.

    Attributes:
        work_root: where the rows' folders, the manifest and the table are.
        settings: the run's settings.
        launcher: how its processes start.
        rows: the chosen rows, in the paper's order.
        smoke_configs: smoke run only: config file -> its text.
        speed: img/s per row name, once known.
        speed_record: a new speed measurement, kept in the work root when the run starts.
    """
    work_root: str
    settings: Settings
    launcher: object
    rows: List[RowPlan]
    smoke_configs: Dict[str, str] = field(default_factory=dict)
    speed: Dict[str, Speed] = field(default_factory=dict)
    speed_record: Optional[dict] = None

    @property
    def smoke_data(self) -> str:
        return osp.join(self.work_root, 'data')


def parse_cfg_options(texts: List[str]) -> dict:
    """``key=value`` texts as mmengine's ``--cfg-options`` parses them."""
    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='options')(None, namespace, list(texts))
    return namespace.options


def data_root_options(cfg, data_root: str) -> List[str]:
    """The ``--cfg-options`` that move a config's datasets and evaluators to ``data_root``."""
    old = innermost_dataset(cfg.train_dataloader).get('data_root') or ''
    new = osp.join(data_root, '')
    options = [f'{split}_dataloader.dataset.data_root={new}' for split in ('train', 'val', 'test')
               if cfg.get(f'{split}_dataloader')]
    for key in ('val_evaluator', 'test_evaluator'):
        ann_file = (cfg.get(key) or {}).get('ann_file')
        if ann_file and old and ann_file.startswith(old):
            options.append(f'{key}.ann_file={new}{ann_file[len(old):]}')
    return options


def make_launcher(args, settings: Settings):
    """The launcher of the run, once its options are checked (for a run on this node, the GPUs
    it asks for; for Slurm, the partition, the nodes and ``sbatch``)."""
    starts = not (args.collect or args.dry_run)
    if args.launcher != 'slurm':
        if not (settings.smoke or args.collect):
            checks.check_gpus(settings.gpus)
        return LocalLauncher(settings.gpus)
    if settings.smoke:
        raise ToolError("--smoke runs on this machine's CPU: drop --launcher slurm")
    if args.stop_after_epochs:
        raise ToolError('--stop-after-epochs is for runs on this node (a testing aid)')
    if not args.partition and not args.collect:
        raise ToolError('--launcher slurm needs --partition NAME (the GPU partition)')
    if settings.gpus > args.gpus_per_node and settings.gpus % args.gpus_per_node:
        raise ToolError(f'--gpus {settings.gpus} over several nodes must be a multiple of '
                        f'--gpus-per-node {args.gpus_per_node}')
    if starts and shutil.which('sbatch') is None:
        raise ToolError("--launcher slurm: sbatch is not on PATH; run this on the cluster's "
                        'login node (or --dry-run to see the jobs)')
    return SlurmLauncher(settings.gpus, args.partition, args.gpus_per_node, args.cpus_per_task,
                         args.time)


def _row_config(row: Row, settings: Settings, work_root: str, texts: Dict[str, str]) -> str:
    """The config a row runs: its own, or its smoke config (text kept in ``texts``)."""
    if not settings.smoke:
        return row.config
    path = smoke.config_file(osp.join(work_root, 'configs'), row)
    texts[path] = smoke.config_text(row, osp.join(work_root, 'data'))
    return path


def _load(path: str, text: Optional[str], options: dict, scratch: str):
    """Load a config; a smoke config not yet written is loaded from a copy in ``scratch``."""
    if text is not None and not osp.isfile(path):
        copy = osp.join(scratch, osp.basename(path))
        with open(copy, 'w') as f:
            f.write(text)
        path = copy
    return load_config(path, options)


def plan_row(row: Row, settings: Settings, work_root: str, texts: Dict[str, str],
             scratch: str) -> RowPlan:
    """Load a row's config with the run's options and find its state."""
    config = _row_config(row, settings, work_root, texts)
    cfg = _load(config, texts.get(config), parse_cfg_options(settings.cfg_options), scratch)
    options = list(settings.cfg_options)
    if settings.data_root:
        moved = data_root_options(cfg, settings.data_root)
        cfg.merge_from_dict(parse_cfg_options(moved))
        options += moved
    dirs = RowDirs(osp.join(work_root, row.stem))
    work = workload(cfg)
    return RowPlan(row, config, cfg, options, dirs, row_state(row, dirs, work.epochs), work)


def check_rows(plan: Plan) -> None:
    """The pre-flight checks of every row and of the data (:mod:`.checks`)."""
    if plan.settings.smoke:
        smoke.check_rows([rp.row for rp in plan.rows], [rp.cfg for rp in plan.rows])
    for rp in plan.rows:
        checks.check_config(rp.row.name, rp.cfg, plan.settings.smoke)
        checks.check_init_checkpoints(rp.row.name, rp.cfg)
    if not plan.settings.smoke:
        checks.check_data(plan.rows[0].cfg, plan.settings.data_root is not None)


def write_smoke_configs(plan: Plan) -> None:
    """Write the smoke configs into the work root (once; one that differs is refused)."""
    for path, text in plan.smoke_configs.items():
        if osp.isfile(path):
            with open(path) as f:
                if f.read() != text:
                    raise ToolError(f"'{path}' is not the smoke config this version writes: "
                                    'choose a new --work-root for the smoke run')
            continue
        write_text(path, text)


def add_estimates(plan: Plan) -> None:
    """Each row's cost from :attr:`Plan.speed`."""
    for rp in plan.rows:
        speed = plan.speed.get(rp.row.name)
        if speed is None or rp.work.train_images is None or rp.work.eval_images is None:
            continue
        done = rp.state.epoch
        if rp.state.status == FINISHED:
            evaluations_left = 0
        elif rp.state.status == NEW:
            evaluations_left = rp.work.evaluations
        else:  # validations after the epochs still to train, and the test
            left = rp.work.evaluations - 1
            evaluations_left = 1 + round(left * (rp.max_epochs - done) / rp.max_epochs)
        rp.estimate = estimate(rp.work, speed, plan.settings.gpus, done, evaluations_left)


def train_command(plan: Plan, rp: RowPlan, stop_after: Optional[int] = None) -> List[str]:
    """The command that trains a row (resuming), optionally stopping after ``stop_after``
    epochs (a simulated interruption)."""
    options = list(rp.cfg_options)
    if stop_after:
        options.append(f'train_cfg.max_epochs={stop_after}')
    return plan.launcher.train(rp.config, train_options(rp.dirs.train, plan.settings.amp,
                                                        options))


def test_command(plan: Plan, rp: RowPlan) -> List[str]:
    """The command that tests a row's final checkpoint."""
    return plan.launcher.test(rp.config, rp.dirs.final_checkpoint(rp.max_epochs),
                              test_options(rp.dirs.test, rp.dirs.test_metrics, rp.cfg_options))


def is_slurm(plan: Plan) -> bool:
    return isinstance(plan.launcher, SlurmLauncher)


def row_steps(plan: Plan, rp: RowPlan, stop_after: Optional[int] = None) -> List[List[str]]:
    """The commands a row still needs, from its state: train (resuming), then test."""
    steps = []
    if rp.state.status in (NEW, INTERRUPTED):
        stop = stop_after if stop_after and stop_after > rp.state.epoch else None
        steps.append(train_command(plan, rp, stop))
    if rp.state.status not in (TESTED, FINISHED):
        steps.append(test_command(plan, rp))
    return steps
