"""Model analysis tools (complexity: parameters and FLOPs in labelled conventions)."""
from .complexity import (CONVENTIONS, PAPER_REFERENCE, complexity_rows, count_ops,
                         markdown_table, model_complexity)

__all__ = [
    'CONVENTIONS', 'PAPER_REFERENCE', 'complexity_rows', 'count_ops', 'markdown_table',
    'model_complexity'
]
