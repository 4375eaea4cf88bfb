"""The commands that train and test a row, measure the speed, and make the synthetic data.

Two launchers build them:

* :class:`LocalLauncher`: this node. One process runs ``tools/train.py`` itself; more run
  ``tools/dist_train.sh`` (torchrun). Tests run on one process (``tools/test.py``).
* :class:`SlurmLauncher`: a Slurm cluster. Each row is one batch job (``sbatch``) whose steps run
  ``srun tools/train.py --launcher slurm`` on every GPU of the job, then ``srun tools/test.py`` on
  one; a last job, started when the rows' jobs have ended, writes the table.

Every training gets ``--auto-scale-lr`` (the lr follows the real total batch, NVIDIA's rule) and
``--resume`` (from the row's last checkpoint; a row without one starts from its first epoch).
"""
import math
import os
import os.path as osp
import shlex
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PYTHON = sys.executable
TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')
DIST_TRAIN = osp.join(ROOT, 'tools', 'dist_train.sh')
SPEED = osp.join(ROOT, 'benchmarks', 'detector_speed.py')
SYNTHETIC = osp.join(ROOT, 'tools', 'data', 'make_synthetic_coco.py')
REPRODUCE = osp.join(ROOT, 'tools', 'reproduce_table.py')


def train_options(train_dir: str, amp: bool, cfg_options: Sequence[str]) -> List[str]:
    """The ``tools/train.py`` options of a row's training (besides the launcher)."""
    options = ['--work-dir', train_dir, '--auto-scale-lr', '--resume']
    if amp:
        options.append('--amp')
    if cfg_options:
        options += ['--cfg-options', *cfg_options]
    return options


def test_options(test_dir: str, metrics: str, cfg_options: Sequence[str]) -> List[str]:
    """The ``tools/test.py`` options of a row's test."""
    options = ['--work-dir', test_dir, '--metrics-out', metrics]
    if cfg_options:
        options += ['--cfg-options', *cfg_options]
    return options


class LocalLauncher:
    """Processes on this node.

    Args:
        gpus (int): Processes per training (GPUs, or 1 CPU process).
    """
    name = 'local'

    def __init__(self, gpus: int):
        self.gpus = gpus

    def train(self, config: str, options: Sequence[str]) -> List[str]:
        if self.gpus > 1:
            return ['bash', DIST_TRAIN, config, str(self.gpus), *options]
        return [PYTHON, TRAIN, config, *options]

    def test(self, config: str, checkpoint: str, options: Sequence[str]) -> List[str]:
        return [PYTHON, TEST, config, checkpoint, *options]

    def speed(self, arguments: Sequence[str]) -> List[str]:
        return [PYTHON, SPEED, *arguments]


@dataclass
class SlurmJob:
    """One batch job: its script and where its output goes."""
    name: str
    script: str
    output: str


class SlurmLauncher:
    """Batch jobs on a Slurm cluster.

    Args:
        gpus (int): GPUs per training (every GPU of the job).
        partition (str): The partition (``sbatch --partition``).
        gpus_per_node (int): GPUs of one node of that partition.
        cpus_per_task (int): CPU cores per GPU process (data loading).
        time (str, optional): The jobs' time limit (``sbatch --time``).
    """
    name = 'slurm'

    def __init__(self, gpus: int, partition: str, gpus_per_node: int, cpus_per_task: int,
                 time: Optional[str] = None):
        self.gpus = gpus
        self.partition = partition
        self.gpus_per_node = gpus_per_node
        self.cpus_per_task = cpus_per_task
        self.time = time

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_node)

    def train(self, config: str, options: Sequence[str]) -> List[str]:
        """A job step on every GPU of the job (one process each, ``--launcher slurm``)."""
        return ['srun', '--kill-on-bad-exit=1', PYTHON, '-u', TRAIN, config, '--launcher',
                'slurm', *options]

    def test(self, config: str, checkpoint: str, options: Sequence[str]) -> List[str]:
        """A job step on one GPU."""
        return ['srun', '--nodes=1', '--ntasks=1', '--gres=gpu:1', PYTHON, '-u', TEST, config,
                checkpoint, *options]

    def speed(self, arguments: Sequence[str]) -> List[str]:
        """A one-GPU job of its own, run from the submitting node (srun waits for it)."""
        return ['srun', f'--partition={self.partition}', '--nodes=1', '--ntasks=1',
                '--gres=gpu:1', f'--cpus-per-task={self.cpus_per_task}',
                '--job-name=ssd300-speed', PYTHON, SPEED, *arguments]

    def _header(self, name: str, output: str, nodes: int, tasks: int, gpus: int) -> List[str]:
        options = [f'--job-name={name}', f'--partition={self.partition}', f'--nodes={nodes}',
                   f'--ntasks-per-node={tasks}']
        options += [f'--gres=gpu:{gpus}'] if gpus else []
        options += [f'--cpus-per-task={self.cpus_per_task}', f'--output={output}']
        options += [f'--time={self.time}'] if self.time else []
        return ['#!/usr/bin/env bash'] + [f'#SBATCH {option}' for option in options]

    def row_job(self, name: str, output: str, steps: Sequence[Sequence[str]]) -> SlurmJob:
        """The job that trains (resuming) and tests one row.

        Args:
            name (str): The job name.
            output (str): Its output file (``%j`` is the job id).
            steps (Sequence[list[str]]): Its commands, in order (from :meth:`train` and
                :meth:`test`).
        """
        per_node = min(self.gpus, self.gpus_per_node)
        lines = self._header(name, output, self.nodes, per_node, per_node)
        lines += ['# written by tools/reproduce_table.py: one row of the table (train, resuming '
                  'from its last checkpoint, then test)',
                  'set -euo pipefail', f'cd {shlex.quote(os.getcwd())}',
                  '# one rendezvous port per job, so that jobs sharing a node do not collide',
                  'export MASTER_PORT="${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}"']
        lines += [shlex.join(step) for step in steps]
        return SlurmJob(name, '\n'.join(lines) + '\n', output)

    def table_job(self, name: str, output: str, command: Sequence[str]) -> SlurmJob:
        """The CPU job that collects the finished rows and writes the table."""
        lines = self._header(name, output, 1, 1, 0)
        lines += ['# written by tools/reproduce_table.py: the table, once the rows\' jobs ended',
                  'set -euo pipefail', f'cd {shlex.quote(os.getcwd())}', shlex.join(command)]
        return SlurmJob(name, '\n'.join(lines) + '\n', output)

    @staticmethod
    def submit(script: str, after: Sequence[str] = ()) -> List[str]:
        """``sbatch`` of a job script (``--parsable``: it prints the job id)."""
        command = ['sbatch', '--parsable']
        if after:
            command.append('--dependency=afterany:' + ':'.join(after))
        return command + [script]


def synthetic_data_command(out: str, arguments: Sequence[str]) -> List[str]:
    """``tools/data/make_synthetic_coco.py`` writing to ``out``."""
    return [PYTHON, SYNTHETIC, '--out', out, *arguments]
