"""COCO evaluation in the paper's format: the twelve AP/AR figures, two backends, the table.

Importing this package registers :class:`CocoTableMetric` in ``mmdet.registry.METRICS``.
"""
from ..coco_figures import FIGURE_NAMES
from .coco_eval import (BACKENDS, CocoEvalResult, CocoFormatError, evaluate_bbox, load_detections,
                        load_gt, summarize_twelve)
from .coco_table_metric import CocoTableMetric

__all__ = [
    'BACKENDS', 'FIGURE_NAMES', 'CocoEvalResult', 'CocoFormatError', 'CocoTableMetric',
    'evaluate_bbox', 'load_detections', 'load_gt', 'summarize_twelve'
]
