"""Plan and run a reproduction of the paper's SSD300 table (the library of
``tools/reproduce_table.py``; the options are that tool's, see its ``--help``).

A call makes the plan (every check passes before anything starts), prints it with the cost, and
then, unless ``--dry-run``: records the settings in the work root, trains and tests each row that
is not finished (resuming interrupted ones), and writes the table and the JSON. Rows that are
finished are skipped and never written again, so the same command resumes a run that died.
"""
import json
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

from iresnet_mmdet.errors import ToolError

from . import report, slurm, smoke
from .checks import expected_data, missing_data
from .cost import SPEED_ROUNDS, Speed, read_speed, speed_arguments, workload
from .launch import synthetic_data_command
from .output import say, write_json
from .plan import (Plan, RowPlan, add_estimates, check_rows, is_slurm, make_launcher, plan_row,
                   row_steps, test_command, train_command, write_smoke_configs)
from .rows import FINISHED, INTERRUPTED, NEW, TESTED, finish_row, select_rows
from .settings import MANIFEST, Settings, check_work_root, read_manifest, write_manifest

DEFAULT_WORK_ROOT = osp.join('work_dirs', 'reproduce_ssd300')
SMOKE_WORK_ROOT = osp.join('work_dirs', 'reproduce_ssd300_smoke')
SPEED_CACHE = 'speed.json'
STOPPED = 'stopped'
_LOG_TAIL = 8


def reproduce(args) -> int:
    """Run the tool (see ``tools/reproduce_table.py --help``); returns the exit status: 0 when
    every chosen row is finished (or the plan is printed, or the jobs are submitted), 1 when
    some row is not, 130 on Ctrl-C."""
    try:
        return _reproduce(args)
    except KeyboardInterrupt:
        print('\ninterrupted: rerun the same command to resume', file=sys.stderr, flush=True)
        return 130


def settings_from(args, work_root: str) -> Settings:
    """The run's settings: from the command line, or (``--collect``) from the work root.

    Raises:
        ToolError: For options that do not go together.
    """
    if args.collect:
        recorded = read_manifest(work_root)
        if recorded is None:
            raise ToolError(f"--collect: '{work_root}' holds no {MANIFEST}, so no run to collect")
        return recorded
    options = list(args.cfg_options or [])
    if args.smoke:
        if args.data_root:
            raise ToolError('--data-root is for COCO: the smoke run writes its synthetic data '
                            'into the work root')
        if args.gpus not in (None, 1):
            raise ToolError('--smoke trains with one CPU process: drop --gpus')
        return Settings(True, 1, 'cpu', False, None, options)
    if args.gpus is None:
        raise ToolError('give --gpus N, the GPUs that train each row (the configs\' batch is 8 '
                        'GPUs x 32; --auto-scale-lr adapts the lr to any N), or --smoke')
    data_root = osp.abspath(args.data_root) if args.data_root else None
    return Settings(False, args.gpus, 'cuda', not args.no_amp, data_root, options)


def _reproduce(args) -> int:
    work_root = osp.abspath(args.work_root or (SMOKE_WORK_ROOT if args.smoke else
                                                DEFAULT_WORK_ROOT))
    settings = settings_from(args, work_root)
    rows = select_rows(args.rows or (smoke.DEFAULT_ROWS if settings.smoke else None))
    check_work_root(work_root, settings)
    launcher = make_launcher(args, settings)
    with tempfile.TemporaryDirectory(prefix='reproduce_') as scratch:
        texts = {}
        plan = Plan(work_root, settings, launcher,
                    [plan_row(row, settings, work_root, texts, scratch) for row in rows], texts)
        if args.collect:
            return report.collect(plan)
        check_rows(plan)
        print_header(plan)
        measure_speed(plan, args, scratch)
        if not args.dry_run:
            start_run(plan)
        add_estimates(plan)
        print_cost(plan)
        if args.dry_run:
            print_commands(plan, args.stop_after_epochs)
            return 0
        if is_slurm(plan):
            return slurm.submit(plan)
        return run_local(plan, args.stop_after_epochs)


# ---------------------------------------------------------------------------------------------
# What the run will do, and what it costs
# ---------------------------------------------------------------------------------------------
def print_header(plan: Plan) -> None:
    """The run's settings, its rows with their states, and the data it reads."""
    s = plan.settings
    where = (f'Slurm partition {plan.launcher.partition}' if is_slurm(plan) else
             'this node' + (' (torchrun)' if s.gpus > 1 else ''))
    kind = ('smoke run (reduced models, synthetic data, 1 CPU process)' if s.smoke else
            f"{s.gpus} GPU{'s' if s.gpus > 1 else ''} per row on {where}"
            + (', AMP' if s.amp else ''))
    say(f"Reproducing the paper's SSD300 table: {len(plan.rows)} rows, {kind}")
    say(f'work root: {plan.work_root}')
    say('rows:')
    for rp in plan.rows:
        progress = f' (epoch {rp.state.epoch} of {rp.max_epochs})' if \
            rp.state.status == INTERRUPTED else ''
        say(f'  {rp.row.name:<17} {rp.state.status + progress:<26} {rp.config}')
    say('data:')
    if s.smoke:
        say(f'  {plan.smoke_data}/ (synthetic, written at the start by: '
            f'{shlex.join(synthetic_data_command(plan.smoke_data, smoke.DATA_ARGUMENTS))})')
        return
    expected = expected_data(plan.rows[0].cfg)
    missing = set(missing_data(expected))
    for path, kind in expected:
        shown = osp.join(path, '') if kind == 'folder' else path
        say(f"  {'missing' if path in missing else 'ok':<8}{shown}")


def _speed_cache(plan: Plan) -> Optional[dict]:
    path = osp.join(plan.work_root, SPEED_CACHE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    if all(rp.row.name in record['rows'] for rp in plan.rows):
        return record
    return None


def measure_speed(plan: Plan, args, scratch: str) -> None:
    """img/s of each row: ``--img-per-s``, the work root's earlier measurement, or a short
    ``benchmarks/detector_speed.py`` run on the run's device (kept in the work root)."""
    if args.img_per_s:
        speed = Speed(args.img_per_s, args.infer_img_per_s, 'given by --img-per-s')
        plan.speed = {rp.row.name: speed for rp in plan.rows}
        return
    record = _speed_cache(plan)
    if record is None:
        record = plan.speed_record = run_speed_measurement(plan, scratch)
    else:
        say(f"img/s: {osp.join(plan.work_root, SPEED_CACHE)} (this run's measurement)")
    plan.speed = {rp.row.name: Speed(**record['rows'][rp.row.name]) for rp in plan.rows}


def _readable(rp: RowPlan) -> str:
    """The row's config file as it can be read now (a smoke config may be a scratch copy)."""
    return rp.cfg.filename


def run_speed_measurement(plan: Plan, scratch: str) -> dict:
    """Run the detector benchmark on the rows' configs.

    Raises:
        ToolError: If it fails (with its last output line).
    """
    s = plan.settings
    json_path, log = osp.join(scratch, 'speed.json'), osp.join(scratch, 'speed.log')
    configs = [_readable(rp) for rp in plan.rows]
    batch = plan.rows[0].work.batch
    rounds = smoke.SPEED_ROUNDS if s.smoke else SPEED_ROUNDS
    command = plan.launcher.speed(speed_arguments(configs, s.device, s.amp, batch, json_path,
                                                  rounds))
    if shutil.which(command[0]) is None:
        raise ToolError(f'the speed measurement needs {command[0]}, which is not on PATH; give '
                        '--img-per-s N instead')
    say(f'measuring img/s (benchmarks/detector_speed.py, {s.device}, batch {batch}'
        f"{', AMP' if s.amp else ''}):\n  $ {shlex.join(command)}")
    status = _run(command, log)
    if status != 0:
        raise ToolError(f'the speed measurement failed (exit status {status}: '
                        f'{_last_line(log)}); give --img-per-s N instead')
    source = (f'measured by benchmarks/detector_speed.py on {s.device}, batch {batch}'
              + (', AMP' if s.amp else '') + f", {time.strftime('%Y-%m-%d %H:%M')}")
    speeds = read_speed(json_path, configs, source)
    rows = {rp.row.name: vars(speeds[_readable(rp)]) for rp in plan.rows}
    return {'command': command, 'rows': rows}


def print_cost(plan: Plan) -> None:
    """The cost table: per row and in total (:mod:`.cost`)."""
    rows = [rp for rp in plan.rows if rp.estimate is not None]
    if not rows:
        say('cost: not estimated yet (the smoke data is written at the start)')
        return
    w, gpus = rows[0].work, plan.settings.gpus
    unit = 'GPU' if plan.settings.device == 'cuda' else 'process'
    evaluations = (f'{w.evaluations} evaluations x {w.eval_images:,} images' if
                   plan.speed[rows[0].row.name].infer else 'no evaluations (no inference img/s)')
    say(f'cost ({w.epochs} epochs x {w.train_images:,} images + {evaluations} per row; img/s of '
        f'one {unit} {plan.speed[rows[0].row.name].source}):')
    say(f"  | row | status | train img/s | infer img/s | {unit}-hours | hours on {gpus} "
        f"{unit}{'s' if gpus > 1 else ''} | {unit}-hours left |")
    say('  |---|---|---|---|---|---|---|')
    for rp in rows:
        speed, e = plan.speed[rp.row.name], rp.estimate
        infer = f'{speed.infer:.1f}' if speed.infer else '-'
        say(f'  | {rp.row.name} | {rp.state.status} | {speed.train:.1f} | {infer} | '
            f'{_hours(e.gpu_hours)} | {_hours(e.hours)} | {_hours(e.left_gpu_hours)} |')
    total = sum(rp.estimate.gpu_hours for rp in rows)
    left = sum(rp.estimate.left_gpu_hours for rp in rows)
    say(f'  | total | | | | {_hours(total)} | {_hours(total / gpus)} | {_hours(left)} |')
    say('  GPU-hours = (epochs x images / train img/s + evaluations x images / infer img/s) / '
        '3600; hours = GPU-hours / GPUs (docs/ssd300.md)')


def _hours(value: float) -> str:
    """Two decimals; two significant digits below 0.1 (a smoke run's seconds show)."""
    return f'{value:.2f}' if value >= 0.1 or value == 0 else f'{value:.2g}'


def print_commands(plan: Plan, stop_after: Optional[int]) -> None:
    """Every command the run would run (``--dry-run``)."""
    say('commands:')
    if plan.settings.smoke:
        say(f'  $ {shlex.join(synthetic_data_command(plan.smoke_data, smoke.DATA_ARGUMENTS))}')
    if is_slurm(plan):
        slurm.print_jobs(plan)
        return
    for rp in plan.rows:
        say(f'  {rp.row.name} ({rp.state.status}):')
        for step in row_steps(plan, rp, stop_after):
            say(f'    $ {shlex.join(step)}')


# ---------------------------------------------------------------------------------------------
# Running on this node
# ---------------------------------------------------------------------------------------------
def start_run(plan: Plan) -> None:
    """Record the settings, write the smoke run's configs and data, keep the measured speed."""
    write_manifest(plan.work_root, plan.settings)
    record = plan.speed_record
    if record is not None:
        write_json(osp.join(plan.work_root, SPEED_CACHE), record)
    if not plan.settings.smoke:
        return
    write_smoke_configs(plan)
    log = osp.join(plan.work_root, 'data.log')
    command = synthetic_data_command(plan.smoke_data, smoke.DATA_ARGUMENTS)
    if _run(command, log) != 0:
        raise ToolError(f'writing the synthetic data failed: {_last_line(log)}')
    for rp in plan.rows:
        rp.work = workload(rp.cfg)


def run_local(plan: Plan, stop_after: Optional[int]) -> int:
    """Train and test every row that is not finished, then write the table.

    Args:
        plan: The run.
        stop_after: Stop the first training after this many epochs and end the run there, as
            if it had been killed (``--stop-after-epochs``, for tests).
    """
    failures = []
    for rp in plan.rows:
        outcome = run_row(plan, rp, stop_after)
        if outcome == STOPPED:
            say(f'{rp.row.name}: stopped after {stop_after} epochs as --stop-after-epochs '
                'asked (a simulated interruption); rerun without it to resume')
            return 1
        if outcome:
            say(f'FAILED {outcome}')
            failures.append(outcome)
    status = report.write_table(plan)
    if failures:
        say(f'{len(failures)} rows failed (above); rerun the same command to retry them')
    return 1 if failures else status


def run_row(plan: Plan, rp: RowPlan, stop_after: Optional[int]) -> Optional[str]:
    """Train (resuming) and test one row; returns None, :data:`STOPPED` or what failed."""
    name, status = rp.row.name, rp.state.status
    if status == FINISHED:
        say(f'{name}: finished, skipped')
        return None
    final = rp.dirs.final_checkpoint(rp.max_epochs)
    if status in (NEW, INTERRUPTED):
        stop = stop_after if stop_after and stop_after > rp.state.epoch else None
        start = (f'resuming from {osp.basename(rp.state.checkpoint)}' if status == INTERRUPTED
                 else 'from its first epoch')
        say(f'{name}: training {start}')
        code, log = run_step(train_command(plan, rp, stop), rp.dirs, 'train')
        if code != 0:
            return f'{name}: training exited with status {code} (output: {log})'
        if stop:
            return STOPPED
        if not osp.isfile(final):
            return f'{name}: training ended without {final} (output: {log})'
    if status != TESTED:
        say(f'{name}: testing {final}')
        code, log = run_step(test_command(plan, rp), rp.dirs, 'test')
        if code != 0:
            return f'{name}: the test exited with status {code} (output: {log})'
    problem = finish_row(rp.row, rp.dirs)
    if problem is None:
        say(f'{name}: finished ({rp.dirs.metrics})')
    return problem


def run_step(command: List[str], dirs, step: str) -> Tuple[int, str]:
    """Run one command of a row, its output in ``logs/<step>-<n>.log``, and record the attempt
    in ``logs/attempts.jsonl``; returns the exit status and the log."""
    os.makedirs(dirs.logs, exist_ok=True)
    number = 1 + sum(1 for f in os.listdir(dirs.logs) if f.startswith(f'{step}-'))
    log = osp.join(dirs.logs, f'{step}-{number}.log')
    say(f'  $ {shlex.join(command)}\n    output: {log}')
    started = time.time()
    code = _run(command, log)
    record = {'step': step, 'command': command, 'log': log, 'exit_status': code,
              'started': time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(started)),
              'seconds': round(time.time() - started, 1)}
    with open(osp.join(dirs.logs, 'attempts.jsonl'), 'a') as f:
        f.write(json.dumps(record) + '\n')
    if code != 0:
        with open(log, errors='replace') as f:
            tail = f.readlines()[-_LOG_TAIL:]
        say(''.join('    | ' + line for line in tail).rstrip())
    return code, log


def _run(command: List[str], log: str) -> int:
    with open(log, 'w') as f:
        return subprocess.call(command, stdout=f, stderr=subprocess.STDOUT)


def _last_line(log: str) -> str:
    with open(log, errors='replace') as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1] if lines else 'no output'
