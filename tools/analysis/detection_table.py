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

Run with --help for all options. The logic is in iresnet_mmdet/evaluation/detection_table.py.
"""
import sys

from iresnet_mmdet.evaluation.detection_table import main

if __name__ == '__main__':
    sys.exit(main())
