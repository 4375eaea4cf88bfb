"""A run on a Slurm cluster: one batch job per row that is not finished, then one that writes the
table (:class:`.launch.SlurmLauncher` builds their scripts).

The jobs submitted for a row are listed in its ``logs/slurm_jobs.txt``; a row whose job Slurm
still lists (pending or running) is not submitted again, so rerunning the command resubmits only
what ended without finishing.
"""
import os
import os.path as osp
import shlex
import subprocess
from typing import List, Sequence

from iresnet_mmdet.errors import ToolError

from .launch import PYTHON, REPRODUCE, SlurmJob
from .output import say, write_text
from .plan import Plan, RowPlan, row_steps
from .report import finish_tested, write_table
from .rows import FINISHED, TESTED

ROW_SCRIPT = 'slurm_job.sh'
TABLE_SCRIPT = 'slurm_table_job.sh'


def row_job(plan: Plan, rp: RowPlan) -> SlurmJob:
    """The job of one row: its remaining steps."""
    return plan.launcher.row_job(rp.row.stem, osp.join(rp.dirs.logs, 'slurm-%j.log'),
                                 row_steps(plan, rp))


def table_job(plan: Plan) -> SlurmJob:
    """The job that collects the rows and writes the table (``--collect``)."""
    command = [PYTHON, REPRODUCE, '--work-root', plan.work_root, '--collect', '--rows',
               *[rp.row.name for rp in plan.rows]]
    return plan.launcher.table_job('ssd300-table',
                                   osp.join(plan.work_root, 'slurm-table-%j.log'), command)


def _indented(script: str) -> str:
    return '    ' + script.rstrip().replace('\n', '\n    ')


def print_jobs(plan: Plan) -> None:
    """The jobs the run would submit, with their scripts (``--dry-run``)."""
    for rp in plan.rows:
        if rp.state.status in (TESTED, FINISHED):
            say(f'  {rp.row.name} ({rp.state.status}): no job')
            continue
        script = osp.join(rp.dirs.root, ROW_SCRIPT)
        say(f'  {rp.row.name} ({rp.state.status}): $ {shlex.join(plan.launcher.submit(script))}')
        say(_indented(row_job(plan, rp).script))
    script = osp.join(plan.work_root, TABLE_SCRIPT)
    say(f"  the table, after the rows' jobs: "
        f"$ {shlex.join(plan.launcher.submit(script, ['<row job ids>']))}")
    say(_indented(table_job(plan).script))


def queued_jobs(rp: RowPlan) -> List[str]:
    """The row's earlier jobs that Slurm still lists (pending or running)."""
    path = osp.join(rp.dirs.logs, 'slurm_jobs.txt')
    if not osp.isfile(path):
        return []
    with open(path) as f:
        submitted = [line.strip() for line in f if line.strip()]
    listed = subprocess.run(['squeue', '--noheader', '--format=%i',
                             f'--jobs={",".join(submitted)}'], capture_output=True, text=True)
    return [job for job in listed.stdout.split() if job in submitted]


def submit_job(plan: Plan, job: SlurmJob, script: str, after: Sequence[str] = ()) -> str:
    """Write a job's script and submit it; returns the job id.

    Raises:
        ToolError: If sbatch refuses it.
    """
    os.makedirs(osp.dirname(job.output), exist_ok=True)
    write_text(script, job.script)
    os.chmod(script, 0o755)
    command = plan.launcher.submit(script, after)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip() or 'no output').splitlines()
        raise ToolError(f'sbatch refused the job ({shlex.join(command)}): {reason[-1]}')
    job_id = result.stdout.strip().split(';')[0]  # --parsable: "id" or "id;cluster"
    say(f'  submitted job {job_id}: {script}')
    return job_id


def submit(plan: Plan) -> int:
    """Submit one job per row that is not finished (nor queued), then the table's job."""
    finish_tested(plan)
    ids = []
    for rp in plan.rows:
        if rp.state.status in (TESTED, FINISHED):
            continue
        queued = queued_jobs(rp)
        if queued:
            say(f"{rp.row.name}: job {', '.join(queued)} is queued or running: not submitted "
                'again')
            ids += queued
            continue
        job_id = submit_job(plan, row_job(plan, rp), osp.join(rp.dirs.root, ROW_SCRIPT))
        with open(osp.join(rp.dirs.logs, 'slurm_jobs.txt'), 'a') as f:
            f.write(job_id + '\n')
        ids.append(job_id)
    if not ids:
        return write_table(plan)
    table_id = submit_job(plan, table_job(plan), osp.join(plan.work_root, TABLE_SCRIPT), ids)
    say(f"job {table_id} writes the table when the rows' jobs have ended (or rerun this command "
        'then: it resubmits the rows that did not finish)')
    return 0
