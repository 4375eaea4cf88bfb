"""Facts the docs state once, and generated legends that match their tables.

tests/test_docs_tables.py checks that each generated block equals its command's output; this file
checks what that cannot: that a legend explains only columns its table has, and that the mmcv
build time (a measured figure) lives on one page that the others link to.
"""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r'<!-- generated: (?P<command>[^\n]*complexity\.py[^\n]*) -->\n(?P<body>.*?)'
                   r'<!-- /generated -->', re.DOTALL)
PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]


def complexity_blocks():
    return [(page.name, m['body']) for page in PAGES for m in BLOCK.finditer(page.read_text())]


def test_legends_explain_only_columns_of_their_tables():
    blocks = complexity_blocks()
    assert len(blocks) >= 4
    for page, body in blocks:
        headers = {cell.strip() for line in body.splitlines() if line.startswith('| ')
                   for cell in line.strip('|').split('|')}
        legend = [line for line in body.splitlines() if line.startswith('GFLOPs (paper counter)')]
        for line in legend:
            for sentence in line.split('; '):
                term = sentence.split(':')[0]
                assert any(h == term or h.startswith(term + ' (') for h in headers), (
                    f'{page}: the legend explains "{term}", not a column of the table')


def test_mmcv_build_time_is_stated_on_one_page():
    """docs/install.md holds the measured build time; README and the scripts link to it."""
    figure = re.compile(r'\d+(?:-\d+)?\s*(?:min|minutes)\b')
    texts = {page.relative_to(REPO).as_posix(): page.read_text() for page in PAGES}
    texts['tools/bootstrap.sh'] = (REPO / 'tools' / 'bootstrap.sh').read_text()
    stating = sorted(name for name, text in texts.items()
                     for sentence in re.split(r'(?<=[.;])\s', text)
                     if 'mmcv' in sentence and re.search(r'\bbuil|\bcompil', sentence)
                     and figure.search(sentence))
    assert set(stating) <= {'docs/install.md'}, stating
