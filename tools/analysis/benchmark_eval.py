#!/usr/bin/env python
"""Time the two COCO evaluation backends on a val2017-sized synthetic case.

The case is deterministic (``--seed``): 5,000 images, about 36,000 ground-truth boxes over 80
categories (small, medium and large, 1% crowd), and up to 100 detections per image (true
positives with localisation noise, duplicates, confused classes and many low-score false
positives, as a detector with a 0.05 score threshold emits). Both backends evaluate the same
validated inputs; the script prints the time of each, their ratio and whether all twelve figures
are identical, and exits with status 1 if they differ or the speed-up is below --min-speedup.

    .venv/bin/python tools/analysis/benchmark_eval.py            # about a minute on one core
    .venv/bin/python tools/analysis/benchmark_eval.py --images 500 --min-speedup 0   # quick look
"""
import argparse
import hashlib
import json
import os.path as osp
import sys
import time
from collections import Counter

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root

from iresnet_mmdet.atomic import check_output, write_output  # noqa: E402
from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402
from iresnet_mmdet.coco_figures import FIGURE_NAMES  # noqa: E402
from iresnet_mmdet.evaluation.coco_eval import (  # noqa: E402
    evaluate_bbox, load_gt, validate_detections)
from iresnet_mmdet.evaluation.synthetic import make_coco_case  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=5000)
    parser.add_argument('--categories', type=int, default=80)
    parser.add_argument('--boxes-per-image', type=float, default=7.3)
    parser.add_argument('--max-dets', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--repeat', type=int, default=1,
                        help='time each backend this many times and keep the fastest')
    parser.add_argument('--min-speedup', type=float, default=3.0,
                        help='exit with status 1 below this pycocotools/faster-coco-eval ratio')
    parser.add_argument('--json', metavar='FILE', help='also write the measurements here')
    return parser.parse_args(argv)


def check_args(args):
    """Sizes of the case in range and the --json file writable, before the work."""
    for option, value in (('--images', args.images), ('--categories', args.categories),
                          ('--max-dets', args.max_dets), ('--repeat', args.repeat)):
        if value < 1:
            raise ToolError(f'{option} {value}: give 1 or more')
    if not 0 < args.boxes_per_image < 1e4:
        raise ToolError(f'--boxes-per-image {args.boxes_per_image:g}: give a positive number')
    check_output(args.json, '--json', ToolError)


def time_backend(gt, dets, backend, repeat):
    best, result = float('inf'), None
    for _ in range(repeat):
        tic = time.perf_counter()
        result = evaluate_bbox(gt, dets, backend=backend, validate=False)
        best = min(best, time.perf_counter() - tic)
    return best, result


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    tic = time.perf_counter()
    gt, dets = make_coco_case(num_images=args.images, num_categories=args.categories,
                              boxes_per_image=args.boxes_per_image, max_dets=args.max_dets,
                              seed=args.seed)
    generated = time.perf_counter() - tic
    digest = hashlib.sha256(json.dumps([gt, dets], sort_keys=True).encode()).hexdigest()[:16]
    per_image = Counter(d['image_id'] for d in dets)
    print(f"case: {len(gt['images'])} images, {len(gt['annotations'])} ground-truth boxes "
          f"({sum(a['iscrowd'] for a in gt['annotations'])} crowd), "
          f"{len(gt['categories'])} categories, {len(dets)} detections "
          f'(max {max(per_image.values(), default=0)} per image), seed {args.seed}, '
          f'sha256 {digest}, generated in {generated:.1f}s')

    tic = time.perf_counter()
    validate_detections(dets, load_gt(gt))
    print(f'input validation (shared by both backends): {time.perf_counter() - tic:.2f}s')

    times, figures = {}, {}
    for backend in ('faster-coco-eval', 'pycocotools'):
        times[backend], result = time_backend(gt, dets, backend, args.repeat)
        figures[backend] = result.figures
        print(f'{backend:>17}: {times[backend]:7.2f}s')
    ratio = times['pycocotools'] / times['faster-coco-eval']
    fast, ref = figures['faster-coco-eval'], figures['pycocotools']
    identical = all(fast[n] == ref[n] for n in FIGURE_NAMES)
    print(f'speed-up (pycocotools / faster-coco-eval): {ratio:.2f}x')
    print(f'{"figure":>6} {"pycocotools":>20} {"faster-coco-eval":>20}')
    for n in FIGURE_NAMES:
        print(f'{n:>6} {ref[n]:20.17f} {fast[n]:20.17f}{"" if fast[n] == ref[n] else "  DIFFERS"}')
    print(f'all twelve figures identical: {identical}')
    if args.json:  # printed above: a failed write loses nothing
        measured = dict(case_sha256=digest, seconds=times, speedup=ratio, identical=identical,
                        figures=figures)
        write_output(args.json, lambda tmp: _write_json(tmp, measured), ToolError)
    ok = identical and ratio >= args.min_speedup
    if not ok:
        print('FAIL: ' + ('figures differ' if not identical else
                          f'speed-up {ratio:.2f}x < {args.min_speedup}x'), file=sys.stderr)
    return 0 if ok else 1


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


if __name__ == '__main__':
    run_main(main)
