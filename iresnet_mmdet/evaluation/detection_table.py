"""The paper's detection table (SSD300, COCO val2017) from evaluated runs, as markdown and CSV.

Used by ``tools/analysis/detection_table.py`` (the command line).

Columns: Backbone | AP .5:.95 | AP .5 | AP .75 | AP S | AP M | AP L | AR 1 | AR 10 | AR 100 |
AR S | AR M | AR L | params | GFLOPs. AP/AR are printed in percent, params in millions, every
number with two decimals, as in the paper. The published rows come from
:data:`iresnet_mmdet.paper.SSD300_COCO` (Duta et al., ICPR 2020, arXiv:2004.04989).
"""
import csv
import io
import json
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from iresnet_mmdet import paper
from iresnet_mmdet.models import zoo
from ..coco_figures import FIGURE_NAMES, TWELVE_FIGURES
from .coco_eval import CocoFormatError, evaluate_bbox, load_gt

COLUMNS = ('Backbone', ) + tuple(f.label for f in TWELVE_FIGURES) + ('params', 'GFLOPs')
#: Decimals of every printed number (the paper's table prints two everywhere).
DIGITS = 2
#: pycocotools' figure for "no ground truth in that area range" (printed "n/a").
UNDEFINED = -1.0


@dataclass
class TableRow:
    """One table row.

    Attributes:
        name (str): Text of the Backbone cell.
        figures (dict): FIGURE_NAMES -> percent, :data:`UNDEFINED` (-1, pycocotools' "no ground
            truth in that range") or None (unknown). For ``kind='diff'`` the differences, in
            percentage points; for ``kind='paper'`` :class:`~iresnet_mmdet.paper.Figure` values.
        params (float, optional): Parameters in millions.
        gflops (float, optional): GFLOPs.
        kind (str): ``'ours'``, ``'paper'`` or ``'diff'`` (ours minus paper).
    """
    name: str
    figures: Dict[str, Optional[float]]
    params: Optional[float] = None
    gflops: Optional[float] = None
    kind: str = 'ours'


def ours_row(name: str, fractions: Dict[str, float], params: Optional[float] = None,
             gflops: Optional[float] = None) -> TableRow:
    """A row of ours from the twelve figures as fractions (what evaluations report).

    Args:
        name (str): Backbone cell.
        fractions (dict): FIGURE_NAMES -> fraction in [0, 1], or -1 where undefined.
        params (float, optional): Parameters in millions.
        gflops (float, optional): GFLOPs.

    Returns:
        TableRow: The row, figures in percent.
    """
    figures = OrderedDict(
        (n, UNDEFINED if fractions[n] == -1 else 100 * fractions[n]) for n in FIGURE_NAMES)
    return TableRow(name, figures, params, gflops)


# ---------------------------------------------------------------------------------------------
# Reading evaluated runs
# ---------------------------------------------------------------------------------------------
def _figures_from_flat(record: dict, prefix: Optional[str], source: str) -> Optional[dict]:
    """The twelve figures from a flat ``{'<prefix>/bbox_AP': ...}`` dict, or None if absent."""
    if prefix is not None:
        prefixes = [f'{prefix}/' if prefix else '']
    else:
        prefixes = sorted({k[:-len('bbox_AP')] for k in record
                           if isinstance(k, str) and k.endswith('bbox_AP')})
    if not prefixes or f'{prefixes[0]}bbox_AP' not in record:
        return None
    if len(prefixes) > 1:
        raise CocoFormatError(f"metrics file '{source}' holds several evaluators' figures "
                              f"(prefixes {prefixes}); choose one with --prefix.")
    pre = prefixes[0]
    missing = [n for n in FIGURE_NAMES if f'{pre}bbox_{n}' not in record]
    if missing:
        raise CocoFormatError(
            f"metrics file '{source}' has {pre}bbox_AP but not {missing}: it was not written with "
            "CocoTableMetric (mmdet's CocoMetric logs no AR@1/10/100). Test again with "
            "val_evaluator/test_evaluator type='CocoTableMetric', or pass the detections JSON "
            '(<outfile_prefix>.bbox.json) instead.')
    return OrderedDict((n, float(record[f'{pre}bbox_{n}'])) for n in FIGURE_NAMES)


def read_metrics(path: str, prefix: Optional[str] = None) -> Optional[dict]:
    """Read the twelve figures from a metrics file.

    Accepted: the ``<timestamp>.json`` that ``tools/test.py`` writes (mmengine's LoggerHook), a
    JSON-lines scalars file (``vis_data/scalars.json``; the last record with the figures wins), or
    the ``<outfile_prefix>.metrics.json`` of ``CocoTableMetric``.

    Args:
        path (str): The file.
        prefix (str, optional): Metric prefix (``'coco'`` by default when unambiguous).

    Returns:
        dict or None: FIGURE_NAMES -> fraction; None when the file is a detections list.

    Raises:
        CocoFormatError: the file holds no (complete) set of the twelve figures.
    """
    if not osp.isfile(path):
        raise CocoFormatError(f"result file '{path}' does not exist.")
    with open(path) as f:
        text = f.read()
    try:
        records = [json.loads(text)]
    except json.JSONDecodeError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise CocoFormatError(f"result file '{path}' is neither JSON nor JSON lines ({e})."
                                  ) from None
    if len(records) == 1 and isinstance(records[0], list):
        return None
    for record in reversed(records):
        if not isinstance(record, dict):
            continue
        if isinstance(record.get('bbox'), dict) and 'AP' in record['bbox']:
            return OrderedDict((n, float(record['bbox'][n])) for n in FIGURE_NAMES)
        figures = _figures_from_flat(record, prefix, path)
        if figures is not None:
            return figures
    raise CocoFormatError(
        f"result file '{path}' holds no COCO box figures (no '*bbox_AP' key). Expected the "
        "metrics JSON written by tools/test.py with CocoTableMetric, CocoTableMetric's "
        '.metrics.json, or a detections JSON list.')


def _evaluator_ann_file(cfg) -> Optional[str]:
    for key in ('test_evaluator', 'val_evaluator'):
        evaluators = cfg.get(key)
        for ev in (evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]):
            if isinstance(ev, dict) and ev.get('ann_file'):
                return ev['ann_file']
    return None


def run_figures(result: str, cfg=None, ann_file: Optional[str] = None,
                backend: str = 'faster-coco-eval', prefix: Optional[str] = None) -> dict:
    """The twelve figures of one run, from a metrics file or by evaluating a detections file.

    Args:
        result (str): Metrics file or detections JSON.
        cfg (Config, optional): The run's config (its evaluator's ``ann_file`` is used for a
            detections file when ``ann_file`` is not given).
        ann_file (str, optional): COCO annotation file for a detections file.
        backend (str): Evaluation backend for a detections file.
        prefix (str, optional): Metric prefix in a metrics file.

    Returns:
        dict: FIGURE_NAMES -> fraction.
    """
    figures = read_metrics(result, prefix)
    if figures is not None:
        return figures
    ann_file = ann_file or (_evaluator_ann_file(cfg) if cfg is not None else None)
    if not ann_file:
        raise CocoFormatError(f"'{result}' is a detections file: give the annotation file with "
                              '--ann (or a config whose test_evaluator has ann_file).')
    return evaluate_bbox(load_gt(ann_file), result, backend=backend).figures


def backbone_name(cfg) -> str:
    """Paper-style backbone name from a config, e.g. ``iResNet-50``.

    Args:
        cfg (Config): A detector config with ``model.backbone``.

    Returns:
        str: ``'<the paper's spelling>-<depth>'`` (or the spelling alone without a depth; a type
        outside :mod:`iresnet_mmdet.models.zoo` keeps its own name).
    """
    backbone = cfg.get('model', {}).get('backbone')
    if not isinstance(backbone, dict) or 'type' not in backbone:
        raise CocoFormatError(f"config '{cfg.filename}' has no model.backbone.type; give the "
                              'row name as the third value of --run.')
    return zoo.paper_name(str(backbone['type']), backbone.get('depth'))


def measure_complexity(cfg, convention: str = 'paper', input_size: int = 300):
    """Params (M) and GFLOPs of a config's model, from ``iresnet_mmdet.analysis.complexity``.

    Args:
        cfg (Config): Detector config.
        convention (str): ``'paper'`` (the 2019 thop counter) or ``'macs'``.
        input_size (int): Square input side.

    Returns:
        tuple: ``(params in millions, GFLOPs)``.
    """
    from iresnet_mmdet.analysis.complexity import model_complexity
    out = model_complexity(cfg, input_shape=(3, input_size, input_size), convention=convention)
    return out['params'] / 1e6, out['flops'] / 1e9


# ---------------------------------------------------------------------------------------------
# Building and rendering
# ---------------------------------------------------------------------------------------------
def paper_row(name: str) -> Optional[TableRow]:
    """The published row for a backbone name (:data:`iresnet_mmdet.paper.SSD300_COCO`), or None.
    """
    row = paper.SSD300_COCO.get(name)
    if row is None:
        return None
    return TableRow(f'{name} (paper)', OrderedDict(row.figures), row.params, row.gflops,
                    kind='paper')


def difference(ours: Optional[float], published: Optional[paper.Figure]) -> Optional[float]:
    """Ours minus the paper's number, ours first rounded to the decimals the paper printed.

    The same rule for every number, so a difference of 0 means :func:`iresnet_mmdet.paper.matches`.
    None when either is unknown or ours is undefined.
    """
    if ours is None or published is None or ours == UNDEFINED:
        return None
    return float(f'{ours:.{published.decimals}f}') - published


def with_paper(rows: Sequence[TableRow]) -> List[TableRow]:
    """Insert, after each of our rows, the paper's row and the difference (ours - paper).

    With no rows of ours, all published rows are returned.

    Args:
        rows (Sequence[TableRow]): Our rows (names as :func:`backbone_name` gives them).

    Returns:
        list[TableRow]: The interleaved rows.
    """
    if not rows:
        return [paper_row(name) for name in paper.SSD300_COCO]
    out = []
    for row in rows:
        out.append(row)
        published = paper_row(row.name)
        if published is None:
            continue
        diff = OrderedDict((n, difference(row.figures.get(n), published.figures[n]))
                           for n in FIGURE_NAMES)
        out += [published, TableRow(f'{row.name} diff (ours - paper)', diff,
                                    difference(row.params, published.params),
                                    difference(row.gflops, published.gflops), kind='diff')]
    return out


def _cells(row: TableRow, unknown: str) -> List[str]:
    sign = '+' if row.kind == 'diff' else ''

    def fmt(value):
        if value is None:
            return unknown
        if value == UNDEFINED and row.kind == 'ours':
            return 'n/a'  # pycocotools' -1: no ground truth in that range
        if isinstance(value, paper.Figure):
            return value.text
        shown = round(value, DIGITS)
        return f'{shown:{sign}.{DIGITS}f}' if shown != 0 else f'{0:.{DIGITS}f}'

    return [row.name] + [fmt(row.figures.get(n)) for n in FIGURE_NAMES] + [fmt(row.params),
                                                                           fmt(row.gflops)]


def format_markdown(rows: Sequence[TableRow]) -> str:
    """The table as GitHub markdown ("-" = unknown, "n/a" = no ground truth in that range)."""
    lines = ['| ' + ' | '.join(COLUMNS) + ' |',
             '|:---|' + '---:|' * (len(COLUMNS) - 1)]
    lines += ['| ' + ' | '.join(_cells(row, '-')) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def format_csv(rows: Sequence[TableRow]) -> str:
    """The table as CSV with the same columns and rounding (empty cell = unknown)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(_cells(row, ''))
    return buf.getvalue()
