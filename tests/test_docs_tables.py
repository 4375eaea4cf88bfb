"""Every generated table in README.md and docs/*.md equals what its command prints now.

A generated block is written as::

    <!-- generated: .venv/bin/python tools/analysis/complexity.py --tables fpn -->
    ...the command's output...
    <!-- /generated -->

The command runs from the repository root (a leading ``.venv/bin/python`` runs as this test's
interpreter) and the block must equal its standard output, stripped. Regenerate a stale block by
running the command and pasting its output. Markers inside fenced code blocks are examples and
are not checked.
"""
import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r'<!-- generated: (?P<command>.+?) -->\n(?P<body>.*?)\n?<!-- /generated -->',
                   re.DOTALL)
# A fenced code block (a page may show the markers as an example).
FENCE = re.compile(r'^```.*?^```[^\n]*$', re.DOTALL | re.MULTILINE)


def pages():
    return [p for p in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))] if p.is_file()]


def page_text(page):
    """The page without its fenced code blocks."""
    return FENCE.sub('', page.read_text())


def generated_blocks():
    """(page, command, body) of every generated block, in page order."""
    return [(page.relative_to(REPO).as_posix(), m['command'], m['body'])
            for page in pages() for m in BLOCK.finditer(page_text(page))]


BLOCKS = generated_blocks()


@functools.lru_cache(maxsize=None)
def output_of(command):
    argv = shlex.split(command)
    if argv[0] == '.venv/bin/python':
        argv[0] = sys.executable
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f'{command} failed:\n{proc.stderr[-2000:]}'
    return proc.stdout.strip()


def test_docs_have_generated_tables():
    assert BLOCKS and 'docs/complexity.md' in {page for page, _, _ in BLOCKS}, (
        'no <!-- generated: CMD --> block found')
    unclosed = [page.name for page in pages() if page_text(page).count('<!-- generated: ') !=
                page_text(page).count('<!-- /generated -->')]
    assert not unclosed, f'generated blocks without <!-- /generated --> in {unclosed}'


@pytest.mark.parametrize('page, command, body', BLOCKS,
                         ids=[f'{page}: {command}' for page, command, _ in BLOCKS])
def test_generated_block_equals_command_output(page, command, body):
    assert body.strip() == output_of(command), (
        f'{page}: the block of `{command}` is stale; rerun the command and paste its output')
