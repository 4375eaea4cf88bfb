"""iresnet_mmdet.paper against independent transcriptions of the paper's tables.

``tests/data/paper_tables.md`` (markdown, every table) and ``tests/data/paper_tables.json`` (the
SSD300 table) are verbatim copies of the project's reference transcriptions, made separately from
``paper.py``. Every cell is compared as printed text, so a dropped trailing zero or a swapped
column fails as well as a wrong digit.
"""
import json
import re
from pathlib import Path

import pytest

from iresnet_mmdet import paper
from iresnet_mmdet.coco_figures import FIGURE_NAMES

DATA = Path(__file__).resolve().parent / 'data'
NETWORK = {'baseline (ResNet)': 'ResNet', 'pre-activation': 'PreActResNet'}


def sections():
    text = (DATA / 'paper_tables.md').read_text()
    return {s.split('\n', 1)[0].strip(): s for s in text.split('\n## ')[1:]}


def section(title_start):
    (found, ) = [body for title, body in sections().items() if title.startswith(title_start)]
    return found


def tables(body):
    """Markdown tables of a section: lists of rows of cells, header first, rule dropped."""
    found, current = [], None
    for line in body.splitlines():
        if not line.startswith('|'):
            current = None
            continue
        if current is None:
            current = []
            found.append(current)
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if not set(''.join(cells)) <= set('-:'):
            current.append(cells)
    return found


def text(figure):
    return None if figure is None else figure.text


def classification_texts(table):
    return {name: (text(r.top1), text(r.top5), text(r.params), text(r.gflops))
            for name, r in table.items()}


def depth_blocks(rows):
    """{'<Network>-<depth>': (top-1, top-5, params, GFLOPs)} of a table grouped by depth."""
    header, out = rows[0], {}
    starts = [i for i, cell in enumerate(header) if re.match(r'\d+: top-1', cell)]
    for row in rows[1:]:
        name = NETWORK.get(row[0], row[0])
        for i in starts:
            depth = header[i].split(':')[0]
            out[f'{name}-{depth}'] = tuple(None if c in ('-', 'fail') else c for c in row[i:i + 4])
    return out


def test_ssd300_against_the_markdown():
    (rows, ) = tables(section('SSD300'))
    assert rows[0][1:13] == ['AP .5:.95', 'AP .5', 'AP .75', 'AP S', 'AP M', 'AP L', 'AR 1',
                             'AR 10', 'AR 100', 'AR S', 'AR M', 'AR L']
    expected = {row[0]: row[1:] for row in rows[1:]}
    ours = {name: [text(r.figures[n]) for n in FIGURE_NAMES] + [r.params.text,
                                                                      r.gflops.text]
            for name, r in paper.SSD300_COCO.items()}
    assert ours == expected
    assert list(paper.SSD300_COCO) == list(expected)  # the paper's row order


def test_ssd300_against_the_json():
    table = json.loads((DATA / 'paper_tables.json').read_text())['ssd300_coco_val2017']
    assert tuple(table['columns_percent']) == FIGURE_NAMES
    assert list(table['rows']) == list(paper.SSD300_COCO)
    for name, row in table['rows'].items():
        ours = paper.SSD300_COCO[name]
        assert {n: float(v) for n, v in ours.figures.items()} == {
            n: row[n] for n in FIGURE_NAMES}, name
        assert (ours.params, ours.gflops) == (row['params_M'], row['GFLOPs']), name


def test_imagenet_depth_table():
    expected = {}
    for rows in tables(section('ImageNet validation error')):
        expected.update(depth_blocks(rows))
    assert classification_texts(paper.IMAGENET_DEPTH) == expected


def test_imagenet_extreme_depth():
    body = section('ImageNet validation error')
    found = re.findall(r'(iResNet-\d+)(?: top-1)? ([\d.]+), (?:top-5 )?([\d.]+),\s+([\d.]+) M / '
                       r'([\d.]+) GFLOPs', body)
    assert len(found) == 2
    assert classification_texts(paper.IMAGENET_EXTREME_DEPTH) == {
        name: tuple(numbers) for name, *numbers in found}


def test_resgroup_table_and_architecture():
    body = section('ResGroup on ImageNet')
    (rows, ) = tables(body)
    assert classification_texts(paper.IMAGENET_GROUP) == depth_blocks(rows)
    params, gflops = re.search(r'([\d.]+ / [\d.]+ / [\d.]+) M params,\s+([\d.]+ / [\d.]+ / '
                               r'[\d.]+) GFLOPs', body).groups()
    names = re.search(r'\((\S+) / (\S+) / (\S+)\)', body).groups()
    assert {name: tuple(map(text, row)) for name, row in paper.ARCHITECTURE_COMPLEXITY.items()
            } == dict(zip(names, zip(params.split(' / '), gflops.split(' / '))))
    assert 'G=64 in every stage' in body and 'G = 8, 16, 32, 64' in body
    assert paper.RESGROUP_GROUPS == {'ResGroupFix': (64, ) * 4, 'ResGroup': (8, 16, 32, 64)}


def test_cifar_table():
    (rows, ) = tables(section('CIFAR'))
    depths = [cell.split(':')[0] for cell in rows[0] if ': top-1' in cell]
    expected = {}
    for row in rows[1:]:
        dataset, network = row[0].split(' ')
        name = 'ResNet' if network == 'baseline' else network
        for depth, error, complexity in zip(depths, row[1::2], row[2::2]):
            best, _, spread = error.partition(' ')
            mean, std = re.findall(r'[\d.]+', spread) or (None, None)
            params, gflops = complexity.split('/')
            key = (dataset.lower().replace('-', ''), f'{name}-{depth}')
            expected[key] = (None if best == 'fail' else best, params, gflops, mean, std)
    ours = {(dataset, name): (text(r.top1), text(r.params), text(r.gflops), text(r.mean),
                              text(r.std))
            for dataset, table in paper.CIFAR.items() for name, r in table.items()}
    assert ours == expected


def test_video_table():
    (rows, ) = tables(section('Video'))
    header = rows[0]
    assert header[1] == 'Kinetics-400 top-1' and header[5] == 'SSv2 top-1'
    names = {'baseline3D-50': 'ResNet3D-50'}
    expected = {dataset: {names.get(r[0], r[0]): tuple(r[i:i + 4]) for r in rows[1:]}
                for dataset, i in (('kinetics400', 1), ('ssv2', 5))}
    assert {d: classification_texts(t) for d, t in paper.VIDEO.items()} == expected


def test_state_of_the_art_table():
    (rows, ) = tables(section('Comparison with other networks'))
    expected = {r[0]: tuple(None if c == '-' else c for c in r[1:]) for r in rows[1:]}
    ours = {name: (text(r.top1_224), text(r.top5_224), text(r.top1_large), text(r.top5_large))
            for name, r in paper.STATE_OF_THE_ART.items()}
    assert ours == expected


def test_every_section_is_covered():
    assert [title.split(' (')[0] for title in sections()] == [
        'SSD300 on COCO val2017', 'ImageNet validation error', 'ResGroup on ImageNet',
        'CIFAR-10/100 classification error', 'Video recognition error',
        'Comparison with other networks on ImageNet']


@pytest.mark.parametrize('measured, printed, expected', [
    (124.52, '124.5', True), (124.56, '124.5', False), (20.987, '20.99', True),
    (20.984, '20.98', True), (20.984, '20.99', False), (26.2, '26.20', True),
    (47.0, '47.00', True), (0.2649, '0.26', True), (0.2651, '0.26', False),
])
def test_matches_rounds_to_the_printed_precision(measured, printed, expected):
    assert paper.matches(measured, paper.Figure(printed)) is expected


def test_figure_behaves_as_its_number():
    figure = paper.Figure('26.20')
    assert figure == 26.2 and figure / 100 == 0.262 and str(figure) == '26.20'
    assert figure.decimals == 2 and paper.Figure('124.5').decimals == 1
    assert not paper.matches(26.2, None)
    import pickle
    assert pickle.loads(pickle.dumps(figure)).text == '26.20'
