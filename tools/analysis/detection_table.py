#!/usr/bin/env python
"""Print the paper's detection table (SSD300, COCO val2017) for evaluated runs.

Examples (CONFIG_A/B are detector configs; RUN_A is a work dir of tools/test.py)::

    # the metrics JSON tools/test.py writes (the config's test_evaluator is CocoTableMetric)
    .venv/bin/python tools/analysis/detection_table.py \
        --run CONFIG_A work_dirs/RUN_A/<timestamp>/<timestamp>.json \
        --run CONFIG_B work_dirs/RUN_B/<timestamp>/<timestamp>.json \
        --paper --out work_dirs/detection_table

    # a detections JSON (CocoTableMetric's <outfile_prefix>.bbox.json), evaluated by the tool
    .venv/bin/python tools/analysis/detection_table.py \
        --ann data/coco/annotations/instances_val2017.json \
        --run CONFIG_A work_dirs/RUN_A/results.bbox.json

    # only the published rows (the paper's twelve AP/AR figures, params and GFLOPs)
    .venv/bin/python tools/analysis/detection_table.py --paper --no-complexity

Run with --help for all options. The table itself is built by
iresnet_mmdet/evaluation/detection_table.py.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root

from iresnet_mmdet.config import load_config  # noqa: E402
from iresnet_mmdet.errors import run_main  # noqa: E402
from iresnet_mmdet.evaluation import detection_table as dt  # noqa: E402
from iresnet_mmdet.evaluation.coco_eval import BACKENDS  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Print the paper's SSD300/COCO detection table for evaluated runs.",
        epilog='RESULT is the metrics JSON that tools/test.py writes '
               '(work_dirs/<run>/<timestamp>/<timestamp>.json, needs CocoTableMetric), '
               "CocoTableMetric's <outfile_prefix>.metrics.json, or a detections JSON "
               '(<outfile_prefix>.bbox.json; evaluated here against --ann or the config\'s '
               'test_evaluator ann_file). CONFIG may be "-" (then give NAME; no params/GFLOPs).')
    parser.add_argument('--run', nargs='+', action='append', default=[],
                        metavar='CONFIG RESULT [NAME]',
                        help='one evaluated run; repeat for more rows')
    parser.add_argument('--paper', action='store_true',
                        help="add the paper's published row (its twelve AP/AR figures, params, "
                             'GFLOPs) and the difference after each run (all published rows '
                             'when no --run is given)')
    parser.add_argument('--no-complexity', action='store_true',
                        help='leave params and GFLOPs empty (no model is built)')
    parser.add_argument('--convention', default='paper', choices=('paper', 'macs'),
                        help="FLOP counting: 'paper' (2019 thop, the paper's) or 'macs'")
    parser.add_argument('--input-size', type=int, default=300, help='square input side')
    parser.add_argument('--ann', help='COCO annotation file for detections files')
    parser.add_argument('--backend', default='faster-coco-eval', choices=BACKENDS,
                        help='evaluation backend for detections files')
    parser.add_argument('--prefix', help="metric prefix in metrics files (default: 'coco')")
    parser.add_argument('--format', default='both', choices=('both', 'markdown', 'csv'))
    parser.add_argument('--out', metavar='PREFIX',
                        help='also write PREFIX.md and PREFIX.csv')
    args = parser.parse_args(argv)
    for run in args.run:
        if len(run) not in (2, 3):
            parser.error(f'--run takes CONFIG RESULT [NAME], got {run}')
        if run[0] == '-' and len(run) == 2:
            parser.error(f'--run {" ".join(run)}: without a config, give the row NAME')
    if not args.run and not args.paper:
        parser.error('give at least one --run (or --paper for the published rows)')
    return args


def build_row(config: str, result: str, name: Optional[str], args) -> dt.TableRow:
    """One of our rows from a ``--run`` triple."""
    cfg = None if config == '-' else load_config(config)
    figures = dt.run_figures(result, cfg, args.ann, args.backend, args.prefix)
    params = gflops = None
    if cfg is not None and not args.no_complexity:
        params, gflops = dt.measure_complexity(cfg, args.convention, args.input_size)
    return dt.ours_row(name or dt.backbone_name(cfg), figures, params, gflops)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print (and with ``--out`` write) the table; returns the exit status."""
    args = parse_args(argv)
    rows = [build_row(run[0], run[1], run[2] if len(run) == 3 else None, args)
            for run in args.run]
    if args.paper:
        rows = dt.with_paper(rows)
    markdown, csv_text = dt.format_markdown(rows), dt.format_csv(rows)
    parts = {'both': [markdown, csv_text], 'markdown': [markdown], 'csv': [csv_text]}
    print('\n'.join(parts[args.format]), end='')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(f'{args.out}.md', 'w') as f:
            f.write(markdown)
        with open(f'{args.out}.csv', 'w') as f:
            f.write(csv_text)
    return 0


if __name__ == '__main__':
    run_main(main)
