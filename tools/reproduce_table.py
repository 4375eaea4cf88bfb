#!/usr/bin/env python
"""Reproduce the paper's SSD300 table: train and test its rows, resumable, with the cost up front.

For each chosen row (default: the paper's 8), train its SSD300 config with ``--auto-scale-lr`` on
the given GPUs, test the final checkpoint with the twelve COCO figures, and write the table with
our figures beside the paper's and their differences, plus a JSON of everything. Rerunning the
same command skips finished rows and resumes interrupted ones from their last checkpoint.

Examples::

    # what it would run, the data it expects, and the cost (img/s measured on this node's GPU)
    .venv/bin/python tools/reproduce_table.py --gpus 8 --dry-run
    # the whole table on 8 GPUs of this node (torchrun), resumable
    .venv/bin/python tools/reproduce_table.py --gpus 8
    # on a Slurm cluster: one job per row, then one that writes the table
    .venv/bin/python tools/reproduce_table.py --gpus 8 --launcher slurm --partition gpu
    # the same flow at toy scale on a CPU (reduced models, synthetic data): minutes
    .venv/bin/python tools/reproduce_table.py --smoke

Everything goes into the work root (default ``work_dirs/reproduce_ssd300``): one folder per row
(``train/``, ``test/``, ``metrics.json``, ``logs/``), ``table.md``, ``table.csv``,
``results.json`` and ``reproduce_manifest.json`` (the run's settings: a work root of another run
is refused). Exit status: 0 when every chosen row is finished (or the plan printed, or the jobs
submitted), 1 when some row is not, 2 for bad input (one ``error:`` line, nothing started).
Details: docs/ssd300.md, "Reproducing the table".
"""
import argparse
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # repository root
# mmengine 0.10.7 imports pkg_resources, which setuptools >= 80 flags as deprecated on every run
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from iresnet_mmdet.errors import run_main  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Reproduce the paper's SSD300 table: train and test its rows (resumable), "
        'write the table beside the paper\'s.',
        epilog='Cost per row in GPU-hours = (epochs x train images / train img/s + evaluations x '
        'val images / inference img/s) / 3600, img/s of one GPU (docs/ssd300.md).')
    parser.add_argument('--rows', nargs='+', metavar='NAME',
                        help="the paper's rows to run, e.g. ResNet-50 iResNet-50 (default: all "
                        '8; with --smoke: ResNet-50 iResNet-50)')
    parser.add_argument('--gpus', type=int, help='GPUs that train each row (required, except '
                        'for --smoke and --collect)')
    parser.add_argument('--work-root', help='folder of the run (default: work_dirs/'
                        'reproduce_ssd300, with --smoke work_dirs/reproduce_ssd300_smoke)')
    parser.add_argument('--data-root', help='the COCO folder (default: the configs\' data/coco: '
                        'train2017/, val2017/, annotations/instances_{train,val}2017.json)')
    parser.add_argument('--no-amp', action='store_true',
                        help='train in float32 (default: AMP, as NVIDIA trains SSD300)')
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                        help='passed to every training and test (part of the run\'s settings)')
    parser.add_argument('--launcher', choices=('local', 'slurm'), default='local',
                        help='local: this node (torchrun for several GPUs); slurm: one batch job '
                        'per row')
    parser.add_argument('--partition', help='Slurm partition of the jobs')
    parser.add_argument('--gpus-per-node', type=int, default=8,
                        help='GPUs of one node of the partition (default 8)')
    parser.add_argument('--cpus-per-task', type=int, default=8,
                        help='CPU cores per GPU process in Slurm jobs (default 8, the configs\' '
                        'data-loading workers)')
    parser.add_argument('--time', help='Slurm time limit of each job, e.g. 2-00:00:00 (a job '
                        'that hits it is resumed by the next submission)')
    parser.add_argument('--img-per-s', type=float, metavar='N',
                        help='training img/s of one GPU for the cost estimate (default: measured '
                        'at the start by benchmarks/detector_speed.py on the target device)')
    parser.add_argument('--infer-img-per-s', type=float, metavar='N',
                        help='with --img-per-s: inference img/s, to count the evaluations too')
    parser.add_argument('--dry-run', action='store_true',
                        help='check and print the plan, the data, the cost and every command; '
                        'run nothing (but the speed measurement), write nothing')
    parser.add_argument('--smoke', action='store_true',
                        help='the same flow at toy scale on a CPU: reduced models on synthetic '
                        'data, 2 epochs (minutes; not the paper\'s models)')
    parser.add_argument('--collect', action='store_true',
                        help='only write the table of the work root\'s finished rows (settings '
                        'from its manifest); starts nothing')
    parser.add_argument('--stop-after-epochs', type=int, metavar='N',
                        help='testing aid: stop the first training of this call after N epochs '
                        'and end there, as if the run had been killed')
    args = parser.parse_args(argv)
    for name in ('img_per_s', 'infer_img_per_s', 'stop_after_epochs', 'gpus_per_node',
                 'cpus_per_task'):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv=None):
    from iresnet_mmdet.reproduce import reproduce
    return reproduce(parse_args(argv))


if __name__ == '__main__':
    run_main(main)
