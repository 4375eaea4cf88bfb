"""Model analysis: parameters and FLOPs in labelled conventions.

* :mod:`.counting`: the counting rules of each convention and the hook counter;
* :mod:`.building`: the model to count, from a config, a config file or a name, without data;
* :mod:`.complexity`: params and FLOPs of targets (``model_complexity``, ``complexity_rows``);
* :mod:`.report`: their markdown tables.
"""
from .complexity import PAPER_REFERENCE, complexity_rows, model_complexity
from .counting import CONVENTIONS, count_ops
from .report import detector_table, markdown_table

__all__ = [
    'CONVENTIONS', 'PAPER_REFERENCE', 'complexity_rows', 'count_ops', 'detector_table',
    'markdown_table', 'model_complexity'
]
