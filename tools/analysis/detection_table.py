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
import math
import os.path as osp
import sys
from typing import Optional, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root

from iresnet_mmdet.atomic import check_output, write_output  # noqa: E402
from iresnet_mmdet.config import load_config  # noqa: E402
from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402
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
    parser.add_argument('--percent', action='store_true',
                        help='the metrics files hold percent (0-100), not the fractions (0-1) '
                        'that tools/test.py writes')
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


def read_figures(result: str, cfg, args) -> dict:
    """The twelve figures of a run as fractions; bad files and figures are one error line."""
    try:
        figures = dt.run_figures(result, cfg, args.ann, args.backend, args.prefix)
    except UnicodeDecodeError:
        raise ToolError(f"result file '{result}' is not a text (JSON) file; give the metrics "
                        'JSON of tools/test.py or a detections JSON') from None
    except (ValueError, TypeError) as exc:  # float() of a figure that is no number
        raise ToolError(f"result file '{result}' holds a figure that is not a number "
                        f'({exc})') from None
    return {name: checked_figure(value, name, result, args.percent)
            for name, value in figures.items()}


def checked_figure(value, name: str, result: str, percent: bool) -> float:
    """A figure as a fraction in [0, 1], or -1 (pycocotools' "no ground truth there")."""
    if value == -1:
        return -1.0
    scale = 100 if percent else 1
    if not (math.isfinite(value) and 0 <= value <= scale):
        hint = (' (it looks like percent: pass --percent)' if not percent and 1 < value <= 100
                else '')
        unit = 'a percentage in [0, 100]' if percent else 'a fraction in [0, 1]'
        raise ToolError(f"result file '{result}': {name} = {value} is not {unit} or -1{hint}")
    return value / scale


def build_row(config: str, result: str, name: Optional[str], args) -> dt.TableRow:
    """One of our rows from a ``--run`` triple."""
    cfg = None if config == '-' else load_config(config)
    figures = read_figures(result, cfg, args)
    params = gflops = None
    if cfg is not None and not args.no_complexity:
        params, gflops = dt.measure_complexity(cfg, args.convention, args.input_size)
    return dt.ours_row(name or dt.backbone_name(cfg), figures, params, gflops)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print (and with ``--out`` write) the table; returns the exit status."""
    args = parse_args(argv)
    if args.input_size < 32:
        raise ToolError(f'--input-size {args.input_size} is too small; give the square input '
                        'side in pixels (at least 32)')
    if args.out:
        for suffix in ('.md', '.csv'):
            check_output(args.out + suffix, '--out', ToolError)
    rows = [build_row(run[0], run[1], run[2] if len(run) == 3 else None, args)
            for run in args.run]
    if args.paper:
        rows = dt.with_paper(rows)
    markdown, csv_text = dt.format_markdown(rows), dt.format_csv(rows)
    parts = {'both': [markdown, csv_text], 'markdown': [markdown], 'csv': [csv_text]}
    print('\n'.join(parts[args.format]), end='')
    if args.out:  # printed above: a failed write loses nothing
        for suffix, text in (('.md', markdown), ('.csv', csv_text)):
            write_output(args.out + suffix, lambda tmp, text=text: _write_text(tmp, text),
                         ToolError)
    return 0


def _write_text(path: str, text: str) -> None:
    with open(path, 'w') as f:
        f.write(text)


if __name__ == '__main__':
    run_main(main)
