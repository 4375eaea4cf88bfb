"""The reproduction's results: the paper-format table beside the paper's rows, and a JSON of
everything.

The table is :mod:`iresnet_mmdet.evaluation.detection_table`'s (the format of
``tools/analysis/detection_table.py --paper``): each row of ours, the paper's row and the
difference (ours - paper). A row that is not finished shows ``-`` for its figures.
"""
import json
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional

from iresnet_mmdet import paper
from iresnet_mmdet.evaluation import detection_table as dt

from .output import say, write_json, write_text
from .plan import Plan, RowPlan
from .rows import FINISHED, TESTED, finish_row, read_figures, row_state

TABLE = 'table'
RESULTS = 'results.json'


@dataclass
class RowResult:
    """What the run knows of one row.

    Attributes:
        name: the paper's name of the row.
        config: the config that was run.
        folder: the row's folder in the work root.
        status: its state (see :mod:`.rows`).
        figures: the twelve figures as fractions, or None before the row is finished.
        params: parameters (millions) of the model run, or None.
        gflops: GFLOPs (paper counter) of the model run, or None.
        estimate: the cost estimate (:class:`.cost.Estimate` record), or None.
        attempts: the steps the driver ran for the row (``logs/attempts.jsonl``).
    """
    name: str
    config: str
    folder: str
    status: str
    figures: Optional[dict] = None
    params: Optional[float] = None
    gflops: Optional[float] = None
    estimate: Optional[dict] = None
    attempts: List[dict] = field(default_factory=list)


def table_rows(results: List[RowResult]) -> List[dt.TableRow]:
    """Our rows, each followed by the paper's and the difference."""
    rows = []
    for result in results:
        if result.figures is None:
            rows.append(dt.TableRow(result.name, OrderedDict((n, None) for n in dt.FIGURE_NAMES)))
        else:
            rows.append(dt.ours_row(result.name, result.figures, result.params, result.gflops))
    return dt.with_paper(rows)


def _row_record(result: RowResult, table: List[dt.TableRow]) -> dict:
    """One row of the JSON: our figures in percent (unrounded), the paper's and the difference
    as the table prints them."""
    record = {k: v for k, v in vars(result).items() if k != 'figures'}
    record['fractions'] = result.figures
    by_name = {row.name: row for row in table}
    for key, name in (('ours', result.name), ('paper', f'{result.name} (paper)'),
                      ('diff', f'{result.name} diff (ours - paper)')):
        row = by_name.get(name)
        record[key] = None if row is None or (key == 'ours' and result.figures is None) else {
            **{n: (None if v is None else float(v)) for n, v in row.figures.items()},
            'params': None if row.params is None else float(row.params),
            'gflops': None if row.gflops is None else float(row.gflops)}
    return record


def write_results(work_root: str, results: List[RowResult], run: dict) -> str:
    """Write ``table.md``, ``table.csv`` and ``results.json`` into the work root.

    Args:
        work_root: The work root.
        results: The chosen rows, in the paper's order.
        run: What the JSON says of the whole run (settings, speed, commands, ...).

    Returns:
        str: The table as markdown.
    """
    table = table_rows(results)
    markdown = dt.format_markdown(table)
    write_text(osp.join(work_root, f'{TABLE}.md'), markdown)
    write_text(osp.join(work_root, f'{TABLE}.csv'), dt.format_csv(table))
    document = dict(run, paper=paper.CITATION,
                    table={'markdown': osp.join(work_root, f'{TABLE}.md'),
                           'csv': osp.join(work_root, f'{TABLE}.csv')},
                    rows=[_row_record(result, table) for result in results])
    write_json(osp.join(work_root, RESULTS), document)
    return markdown


def row_result(plan: Plan, rp: RowPlan) -> RowResult:
    """What the run knows of a row now: its state, figures, params and GFLOPs (of the model
    run, counted as the paper counts them), estimate and attempts."""
    from iresnet_mmdet.evaluation.detection_table import measure_complexity
    state = row_state(rp.row, rp.dirs, rp.max_epochs)
    result = RowResult(rp.row.name, rp.config, rp.dirs.root, state.status)
    if state.status == FINISHED:
        result.figures = dict(read_figures(rp.dirs.metrics, f'row {rp.row.name}'))
        result.params, result.gflops = measure_complexity(rp.cfg)
    if rp.estimate is not None:
        speed = {f'{key}_img_per_s': value for key, value in vars(plan.speed[rp.row.name]).items()
                 if key != 'source'}
        result.estimate = dict(rp.estimate.record(), **vars(rp.work), **speed)
    attempts = osp.join(rp.dirs.logs, 'attempts.jsonl')
    if osp.isfile(attempts):
        with open(attempts) as f:
            result.attempts = [json.loads(line) for line in f if line.strip()]
    return result


def write_table(plan: Plan) -> int:
    """Write and print the table, and write the JSON.

    Returns:
        int: 0 when every chosen row is finished, else 1.
    """
    results = [row_result(plan, rp) for rp in plan.rows]
    run = {'tool': 'tools/reproduce_table.py', 'work_root': plan.work_root,
           'settings': plan.settings.record(), 'launcher': plan.launcher.name,
           'speed': {name: vars(speed) for name, speed in plan.speed.items()}}
    markdown = write_results(plan.work_root, results, run)
    say('')
    if plan.settings.smoke:
        say("smoke run: reduced models on synthetic data; its figures say nothing about the "
            "paper's")
    say(markdown.rstrip())
    say(f"table: {osp.join(plan.work_root, TABLE + '.md')} (and .csv); everything: "
        f'{osp.join(plan.work_root, RESULTS)}')
    unfinished = [r.name for r in results if r.status != FINISHED]
    if unfinished:
        say(f"not finished: {', '.join(unfinished)}; rerun the same command to resume them")
        return 1
    return 0


def finish_tested(plan: Plan) -> None:
    """Finish every tested row (its metrics copied to ``metrics.json``), saying which."""
    for rp in plan.rows:
        if rp.state.status == TESTED:
            problem = finish_row(rp.row, rp.dirs)
            say(f'FAILED {problem}' if problem else f'{rp.row.name}: finished ({rp.dirs.metrics})')


def collect(plan: Plan) -> int:
    """``--collect``: finish the tested rows and write the table; starts nothing."""
    finish_tested(plan)
    return write_table(plan)
