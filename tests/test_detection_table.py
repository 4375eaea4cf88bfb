"""tools/analysis/detection_table.py: reads evaluated runs, renders the paper's table exactly.

References are independent of the code under test: the published rows come from
``tests/data/paper_tables.json`` (a separate transcription of the paper), evaluated figures from
pycocotools' own ``COCOeval.summarize()``, the differences were worked out by hand.
"""
import contextlib
import copy
import importlib.util
import io
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest

from iresnet_mmdet.evaluation import detection_table as dt
from iresnet_mmdet.coco_figures import FIGURE_NAMES
from iresnet_mmdet.evaluation.coco_eval import CocoFormatError
from iresnet_mmdet.evaluation.synthetic import make_small_case
from iresnet_mmdet.paper import Figure

REPO = Path(__file__).resolve().parents[1]
PAPER_JSON = json.loads((REPO / 'tests' / 'data' / 'paper_tables.json').read_text())
PAPER_ROWS = PAPER_JSON['ssd300_coco_val2017']['rows']

def load_tool():
    """tools/analysis/detection_table.py as a module."""
    spec = importlib.util.spec_from_file_location(
        'detection_table_tool', REPO / 'tools' / 'analysis' / 'detection_table.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


FIGURES = OrderedDict(zip(FIGURE_NAMES, [0.25349, 0.4249, 0.26, 0.07, 0.27651, 0.4, 0.2349,
                                         0.351, 0.372, -1.0, 0.4099, 0.5751]))


def published_cells(name):
    row = PAPER_ROWS[name]
    return [f'{row[n]:.2f}' for n in FIGURE_NAMES] + [f"{row['params_M']:.2f}",
                                                      f"{row['GFLOPs']:.2f}"]


OURS = ['25.35', '42.49', '26.00', '7.00', '27.65', '40.00', '23.49', '35.10', '37.20', 'n/a',
        '40.99', '57.51']
# ours (rounded to the paper's two decimals) minus the paper's iResNet-50 row, by hand
DIFF = ['-2.39', '-3.36', '-2.51', '-1.52', '-2.42', '-4.62', '-1.80', '-1.80', '-1.31', '-',
        '-1.80', '-1.06', '+0.01', '0.00']
HEADER = ('| Backbone | AP .5:.95 | AP .5 | AP .75 | AP S | AP M | AP L | AR 1 | AR 10 | AR 100 '
          '| AR S | AR M | AR L | params | GFLOPs |')


def md(*cells):
    return '| ' + ' | '.join(cells) + ' |'


EXPECTED_MARKDOWN = '\n'.join([
    HEADER, '|:---|' + '---:|' * 14,
    md('iResNet-50', *OURS, '22.90', '20.99'),
    md('iResNet-50 (paper)', *published_cells('iResNet-50')),
    md('iResNet-50 diff (ours - paper)', *DIFF),
    md('PreActResNet-50', *OURS, '-', '-'),
]) + '\n'

EXPECTED_CSV = '\n'.join([
    HEADER.strip('| ').replace(' | ', ','),
    ','.join(['iResNet-50', *OURS, '22.90', '20.99']),
    ','.join(['iResNet-50 (paper)', *published_cells('iResNet-50')]),
    ','.join(['iResNet-50 diff (ours - paper)', *[c.replace('-', '') if c == '-' else c
                                                  for c in DIFF]]),
    ','.join(['PreActResNet-50', *OURS, '', '']),
]) + '\n'


def known_rows():
    return dt.with_paper([dt.ours_row('iResNet-50', FIGURES, 22.8954, 20.9871),
                          dt.ours_row('PreActResNet-50', FIGURES)])


def pycocotools_stats(gt, dets):
    """The twelve figures as pycocotools' COCOeval.summarize() computes them (fractions)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), 'bbox')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


def test_renders_known_input_exactly():
    rows = known_rows()
    assert dt.format_markdown(rows) == EXPECTED_MARKDOWN
    assert dt.format_csv(rows) == EXPECTED_CSV


def test_published_rows_are_the_paper_table():
    rows = dt.with_paper([])
    assert [r.name for r in rows] == [f'{name} (paper)' for name in PAPER_ROWS]
    lines = dt.format_csv(rows).splitlines()[1:]
    assert lines == [','.join([f'{name} (paper)', *published_cells(name)]) for name in PAPER_ROWS]


@pytest.mark.parametrize('ours, printed, shown', [
    (22.8954, '22.89', '+0.01'), (20.9871, '20.99', '0.00'), (20.984, '20.99', '-0.01'),
    (124.52, '124.5', '0.00'), (124.56, '124.5', '+0.10'), (8.1149, '8.12', '-0.01'),
])
def test_difference_rounds_ours_to_the_printed_precision(ours, printed, shown):
    diff = dt.difference(ours, Figure(printed))
    assert dt._cells(dt.TableRow('x', {}, diff, None, kind='diff'), '-')[-2] == shown


def _write(path, obj, jsonl=False):
    path.write_text('\n'.join(json.dumps(o) for o in obj) if jsonl else json.dumps(obj))
    return str(path)


def test_read_metrics_formats(tmp_path):
    flat = {f'coco/bbox_{n}': v for n, v in FIGURES.items()}
    logged = dict(flat, **{'coco/bbox_mAP': 0.25349, 'time': 1.0, 'data_time': 0.1})
    assert dt.read_metrics(_write(tmp_path / 'test.json', logged)) == FIGURES
    scalars = [dict(logged, step=1), {'loss': 1.0, 'step': 2},
               dict({k: 0.5 for k in flat}, step=3), {'lr': 0.1, 'step': 4}]
    last = dt.read_metrics(_write(tmp_path / 'scalars.json', scalars, jsonl=True))
    assert list(last.values()) == [0.5] * 12
    own = {'backend': 'pycocotools', 'bbox': dict(FIGURES)}
    assert dt.read_metrics(_write(tmp_path / 'run.metrics.json', own)) == FIGURES
    assert dt.read_metrics(_write(tmp_path / 'dets.json', [])) is None
    assert dt.read_metrics(_write(tmp_path / 'p.json', {f'val/bbox_{n}': v for n, v in
                                                        FIGURES.items()}), 'val') == FIGURES


def test_read_metrics_errors(tmp_path):
    mmdet_style = {'coco/bbox_mAP': 0.2, 'coco/bbox_AP': 0.2, 'coco/bbox_AP50': 0.4}
    with pytest.raises(CocoFormatError, match=r"not \['AP75'.*CocoTableMetric"):
        dt.read_metrics(_write(tmp_path / 'a.json', mmdet_style))
    with pytest.raises(CocoFormatError, match='no COCO box figures'):
        dt.read_metrics(_write(tmp_path / 'b.json', {'acc': 1}))
    both = {f'{p}/bbox_{n}': 0.1 for p in ('coco', 'voc') for n in FIGURE_NAMES}
    with pytest.raises(CocoFormatError, match='several evaluators'):
        dt.read_metrics(_write(tmp_path / 'c.json', both))
    (tmp_path / 'd.json').write_text('{"coco/bbox_AP": ')
    with pytest.raises(CocoFormatError, match='neither JSON nor JSON lines'):
        dt.read_metrics(str(tmp_path / 'd.json'))


def _config(tmp_path, backbone, ann_file):
    path = tmp_path / f'{backbone}.py'
    path.write_text(f"model = dict(backbone=dict(type='{backbone}', depth=50))\n"
                    f"val_evaluator = dict(type='CocoTableMetric', ann_file='{ann_file}')\n"
                    'test_evaluator = val_evaluator\n')
    return str(path)


def test_command_line_end_to_end(tmp_path, monkeypatch, capsys):
    gt, dets = make_small_case(seed=21)
    ann = _write(tmp_path / 'ann.json', gt)
    dets_file = _write(tmp_path / 'results.bbox.json', dets)
    metrics = _write(tmp_path / 'metrics.json', {f'coco/bbox_{n}': v for n, v in FIGURES.items()})
    # params/GFLOPs come from the complexity tool; here a stand-in with known values
    complexity = {'iResNet': (22.8954, 20.9871), 'ResNet': (22.8951, 20.9202)}
    monkeypatch.setattr(dt, 'measure_complexity',
                        lambda cfg, convention, size: complexity[cfg.model.backbone.type])
    out = tmp_path / 'table' / 'ssd300'
    status = load_tool().main(['--run', _config(tmp_path, 'iResNet', ann), metrics,
                              '--run', _config(tmp_path, 'ResNet', ann), dets_file,
                              '--run', '-', metrics, 'PreActResNet-50', '--paper', '--out',
                              str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    markdown = (out.parent / 'ssd300.md').read_text()
    assert printed == markdown + '\n' + (out.parent / 'ssd300.csv').read_text()
    lines = markdown.splitlines()
    assert lines[2:5] == EXPECTED_MARKDOWN.splitlines()[2:5]
    # the detections file was evaluated against the config's evaluator ann_file
    stats = pycocotools_stats(gt, dets)
    cells = ['n/a' if v == -1 else f'{100 * v:.2f}' for v in stats]
    assert lines[5] == md('ResNet-50', *cells, '22.90', '20.92')
    assert lines[6] == md('ResNet-50 (paper)', *published_cells('ResNet-50'))
    assert lines[7].startswith('| ResNet-50 diff (ours - paper) |')
    assert lines[7].endswith('| +0.01 | 0.00 |')
    assert lines[8] == EXPECTED_MARKDOWN.splitlines()[5]


def test_command_line_errors(tmp_path, capsys):
    gt, dets = make_small_case(seed=22, num_images=3)
    dets[0]['category_id'] = 12345
    ann = _write(tmp_path / 'ann.json', gt)
    bad = _write(tmp_path / 'dets.json', dets)
    tool = load_tool()
    for argv, message in ((['--run', '-', bad, 'X', '--ann', ann],
                           'category id(s) are not in the annotation file'),
                          (['--run', '-', bad, 'X'], 'give the annotation file with --ann')):
        with pytest.raises(SystemExit) as exit_info:
            tool.run_main(lambda: tool.main(argv))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith('error: ') and message in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit):
        tool.main(['--run', 'only-one-value'])


def test_command_line_refuses_figures_that_are_no_fractions(tmp_path, capsys):
    def metrics(name, value):
        return _write(tmp_path / name, {f'coco/bbox_{n}': value for n in FIGURE_NAMES})

    (tmp_path / 'binary.json').write_bytes(bytes(range(128, 256)))
    (tmp_path / 'a_file').write_text('')
    tool = load_tool()
    cases = [(metrics('percent.json', 31.5), [], 'AP = 31.5 is not a fraction in [0, 1] or -1 '
              '(it looks like percent: pass --percent)'),
             (metrics('nan.json', float('nan')), [], 'AP = nan is not a fraction'),
             (metrics('negative.json', -0.2), [], 'AP = -0.2 is not a fraction'),
             (metrics('words.json', 'high'), [], 'holds a figure that is not a number'),
             (str(tmp_path / 'binary.json'), [], 'is not a text (JSON) file'),
             (metrics('ok.json', 0.3), ['--out', str(tmp_path / 'a_file' / 't')],
              'is a file, so no folder can be made under it'),
             (metrics('ok.json', 0.3), ['--input-size', '0'], '--input-size 0 is too small')]
    for result, extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            tool.run_main(lambda: tool.main(['--run', '-', result, 'X', *extra]))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        assert err.startswith('error: ') and message in err and len(err.splitlines()) == 1, err
    # documented percent input: the same table as the fractions
    assert tool.main(['--run', '-', metrics('pct.json', 31.5), 'X', '--percent',
                      '--format', 'csv']) == 0
    with_percent = capsys.readouterr().out
    assert tool.main(['--run', '-', metrics('frac.json', 0.315), 'X', '--format', 'csv']) == 0
    assert capsys.readouterr().out == with_percent and '31.50' in with_percent


def test_tool_script_runs():
    """The script itself (imports, entry point): the published rows need no model."""
    proc = subprocess.run([sys.executable, 'tools/analysis/detection_table.py', '--paper',
                           '--format', 'csv'], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == ','.join(['ResNet-50 (paper)',
                                                    *published_cells('ResNet-50')])
    assert len(proc.stdout.splitlines()) == 1 + len(PAPER_ROWS)
