"""COCO bounding-box evaluation that reports the twelve figures of pycocotools' ``summarize()``.

This module has no MMDetection dependency: it is shared by the ``CocoTableMetric`` of this package,
``tools/analysis/detection_table.py`` and ``tools/analysis/benchmark_eval.py``.

Two backends compute the same figures:

* ``'pycocotools'``: the reference implementation (pure Python per-image matching).
* ``'faster-coco-eval'``: a C++ reimplementation of ``evaluateImg``/``accumulate``. Its own
  ``summarize()`` takes the headline AP at the *last* ``maxDets`` entry, while pycocotools takes it
  at ``maxDets=100``. This module runs both with ``maxDets=[1, 10, 100]`` and the twelve figures are
  read from the accumulated ``precision``/``recall`` arrays by one shared function
  (:func:`summarize_twelve`, a transcription of pycocotools' ``_summarizeDets``), so the backends
  cannot differ through their summaries.

Inputs are validated before either backend sees them, so malformed annotation files and
detections that do not belong to the annotation file fail with one :class:`CocoFormatError`
naming the problem, instead of an ``AssertionError``/``KeyError`` from inside pycocotools.
"""
import contextlib
import copy
import io
import json
import math
import os
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..coco_figures import TWELVE_FIGURES
from ..errors import ToolError

BACKENDS = ('pycocotools', 'faster-coco-eval')

MAX_DETS = (1, 10, 100)

# How many offending items an error message lists before it says "and N more".
_MAX_LISTED = 5


class CocoFormatError(ToolError, ValueError):
    """An annotation or detections input that cannot be evaluated, with the reason and the fix."""


@dataclass
class CocoEvalResult:
    """The outcome of one evaluation.

    Attributes:
        figures (dict): The twelve figures, ``FIGURE_NAMES`` -> float in [0, 1], or -1.0 where
            pycocotools reports -1 (no ground truth in that area range).
        per_class (dict): Category name -> dict of the twelve figures (NaN where the category has
            no ground truth in that range). Empty unless ``classwise=True``.
        backend (str): The backend that computed the figures.
        num_images (int): Number of images evaluated.
        num_detections (int): Number of detections given.
    """
    figures: Dict[str, float]
    per_class: Dict[str, Dict[str, float]] = field(default_factory=dict)
    backend: str = 'pycocotools'
    num_images: int = 0
    num_detections: int = 0

    def summary_lines(self) -> List[str]:
        """The twelve figures in pycocotools' printed layout (one line each)."""
        lines = []
        for name, _, kind, iou, area, max_dets in TWELVE_FIGURES:
            title = 'Average Precision  (AP)' if kind == 'ap' else 'Average Recall     (AR)'
            iou_str = '0.50:0.95' if iou is None else f'{iou:0.2f}'
            lines.append(f' {title} @[ IoU={iou_str:<9} | area={area:>6s} | '
                         f'maxDets={max_dets:>3d} ] = {self.figures[name]:0.3f}')
        return lines


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------
def _describe(source: Optional[str], what: str) -> str:
    return f"{what} '{source}'" if source else what


def _listed(values: Sequence) -> str:
    shown = ', '.join(repr(v) for v in list(values)[:_MAX_LISTED])
    more = len(values) - _MAX_LISTED
    return shown + (f' and {more} more' if more > 0 else '')


def _is_int_id(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and math.isfinite(value))


def _read_json(path: str, what: str):
    if not osp.isfile(path):
        raise CocoFormatError(f"{what} '{path}' does not exist.")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CocoFormatError(f"{what} '{path}' is not valid JSON ({e}).") from None


def _bbox_problem(bbox) -> Optional[str]:
    """Why ``bbox`` is not a valid COCO ``[x, y, w, h]`` box, or None if it is."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return f'bbox must be a list [x, y, width, height], got {bbox!r}'
    if not all(_is_number(v) for v in bbox):
        return f'bbox must hold 4 finite numbers, got {bbox!r}'
    if bbox[2] < 0 or bbox[3] < 0:
        return f'bbox width and height must be >= 0, got {bbox!r} (is it x1, y1, x2, y2?)'
    return None


def _check_ids(items: list, what: str, where: str) -> set:
    ids = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not _is_int_id(item.get('id')):
            raise CocoFormatError(
                f"{where}: {what}[{i}] has no integer 'id' (got {item!r:.200}).")
        ids.append(item['id'])
    if len(set(ids)) != len(ids):
        seen, dups = set(), []
        for i in ids:
            if i in seen:
                dups.append(i)
            seen.add(i)
        raise CocoFormatError(f"{where}: duplicate {what} ids {_listed(sorted(set(dups)))}; "
                              f'every id must be unique.')
    return set(ids)


def validate_gt(dataset, source: Optional[str] = None) -> dict:
    """Check that ``dataset`` is a COCO detection annotation dict both backends can evaluate.

    Args:
        dataset: The parsed annotation JSON.
        source (str, optional): File name, used in error messages.

    Returns:
        dict: ``dataset`` itself (``annotations`` may be absent: that means no objects).

    Raises:
        CocoFormatError: naming the first problem found.
    """
    where = _describe(source, 'annotation file')
    if isinstance(dataset, list):
        raise CocoFormatError(
            f'{where} is a JSON list (a detections/results file?); a COCO annotation file is an '
            "object with 'images', 'annotations' and 'categories'.")
    if not isinstance(dataset, dict):
        raise CocoFormatError(f'{where} must be a JSON object, got {type(dataset).__name__}.')
    for key in ('images', 'categories'):
        if not isinstance(dataset.get(key), list):
            raise CocoFormatError(f"{where} has no '{key}' list; is it a COCO annotation file?")
    anns = dataset.get('annotations', [])
    if not isinstance(anns, list):
        raise CocoFormatError(f"{where}: 'annotations' must be a list.")
    img_ids = _check_ids(dataset['images'], 'image', where)
    cat_ids = _check_ids(dataset['categories'], 'category', where)
    for cat in dataset['categories']:
        if not isinstance(cat.get('name'), str):
            raise CocoFormatError(f"{where}: category id {cat['id']} has no 'name' string.")
    _check_ids(anns, 'annotation', where)
    for ann in anns:
        aid = ann['id']
        if ann.get('image_id') not in img_ids:
            raise CocoFormatError(f"{where}: annotation id {aid} refers to image_id "
                                  f"{ann.get('image_id')!r}, which is not in 'images'.")
        if ann.get('category_id') not in cat_ids:
            raise CocoFormatError(f"{where}: annotation id {aid} refers to category_id "
                                  f"{ann.get('category_id')!r}, which is not in 'categories'.")
        problem = _bbox_problem(ann.get('bbox'))
        if problem:
            raise CocoFormatError(f'{where}: annotation id {aid}: {problem}.')
        if not _is_number(ann.get('area')):
            raise CocoFormatError(f"{where}: annotation id {aid} has no numeric 'area' (COCO "
                                  'uses it for the small/medium/large ranges; for boxes it is '
                                  'width * height).')
        if ann.get('iscrowd') not in (0, 1, False, True):
            raise CocoFormatError(f"{where}: annotation id {aid} needs 'iscrowd' 0 or 1, got "
                                  f"{ann.get('iscrowd')!r}.")
    return dataset


def load_gt(ann: Union[str, os.PathLike, dict]) -> dict:
    """Load (if a path) and validate a COCO annotation file.

    Args:
        ann (str | PathLike | dict): Annotation file path or already parsed dict.

    Returns:
        dict: The validated annotation dict.
    """
    if isinstance(ann, (str, os.PathLike)):
        path = os.fspath(ann)
        return validate_gt(_read_json(path, 'annotation file'), path)
    return validate_gt(ann)


def validate_detections(dets, gt: dict, source: Optional[str] = None,
                        gt_source: Optional[str] = None) -> list:
    """Check a COCO results list against the annotation dict it is evaluated on.

    Args:
        dets: Parsed results JSON: a list of ``{image_id, category_id, bbox, score}``.
        gt (dict): The validated annotation dict.
        source (str, optional): Detections file name, for error messages.
        gt_source (str, optional): Annotation file name, for error messages.

    Returns:
        list: ``dets`` itself.

    Raises:
        CocoFormatError: naming the problem (unknown image ids or categories list offenders).
    """
    where = f"detections file '{source}'" if source else 'detections'
    gt_where = _describe(gt_source, 'the annotation file')
    if isinstance(dets, dict):
        hint = (' It looks like an annotation file; pass it as the annotation file instead.'
                if 'images' in dets else '')
        raise CocoFormatError(f'{where} must be a JSON list of detections '
                              f'{{image_id, category_id, bbox, score}}, got an object.{hint}')
    if not isinstance(dets, list):
        raise CocoFormatError(f'{where} must be a JSON list of detections, '
                              f'got {type(dets).__name__}.')
    img_ids = {img['id'] for img in gt['images']}
    cat_ids = {cat['id'] for cat in gt['categories']}
    bad_imgs, bad_cats = set(), set()
    for i, det in enumerate(dets):
        if not isinstance(det, dict):
            raise CocoFormatError(f'{where}: entry {i} is not an object: {det!r:.200}.')
        missing = [k for k in ('image_id', 'category_id', 'bbox', 'score') if k not in det]
        if missing:
            raise CocoFormatError(f'{where}: detection {i} lacks {missing} (needs image_id, '
                                  'category_id, bbox [x, y, w, h] and score).')
        if det['image_id'] not in img_ids:
            bad_imgs.add(det['image_id'])
        if det['category_id'] not in cat_ids:
            bad_cats.add(det['category_id'])
        problem = _bbox_problem(det['bbox'])
        if problem:
            raise CocoFormatError(f'{where}: detection {i}: {problem}.')
        if not _is_number(det['score']):
            raise CocoFormatError(f"{where}: detection {i} has a non-finite or non-numeric "
                                  f"score {det['score']!r}.")
    if bad_imgs:
        raise CocoFormatError(
            f'{where}: {len(bad_imgs)} image id(s) are not in {gt_where}: '
            f'{_listed(sorted(bad_imgs, key=repr))}. Were the detections made on another split?')
    if bad_cats:
        raise CocoFormatError(
            f'{where}: {len(bad_cats)} category id(s) are not in {gt_where}: '
            f'{_listed(sorted(bad_cats, key=repr))}. Known ids: {_listed(sorted(cat_ids))}. '
            'Are the labels 0-based class indices instead of COCO category ids?')
    return dets


def load_detections(dets: Union[str, os.PathLike, list], gt: dict,
                    gt_source: Optional[str] = None) -> list:
    """Load (if a path) and validate a COCO results file against ``gt``.

    Args:
        dets (str | PathLike | list): Results file path or parsed list.
        gt (dict): The validated annotation dict.
        gt_source (str, optional): Annotation file name, for error messages.

    Returns:
        list: The validated detections.
    """
    if isinstance(dets, (str, os.PathLike)):
        path = os.fspath(dets)
        return validate_detections(_read_json(path, 'detections file'), gt, path, gt_source)
    return validate_detections(dets, gt, None, gt_source)


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------
def import_backend(backend: str):
    """Import a backend.

    Args:
        backend (str): One of :data:`BACKENDS`.

    Returns:
        tuple: The backend's ``(COCO, COCOeval)`` classes.

    Raises:
        ValueError: unknown backend name. ImportError: the package is not installed.
    """
    if backend == 'pycocotools':
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError:
            raise ImportError("backend 'pycocotools' needs the package pycocotools: "
                              'pip install pycocotools') from None
        return COCO, COCOeval
    if backend == 'faster-coco-eval':
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise ImportError("backend 'faster-coco-eval' needs the package faster-coco-eval: "
                              "pip install faster-coco-eval, or use backend='pycocotools'"
                              ) from None
        return COCO, COCOeval_faster
    raise ValueError(f'unknown COCO evaluation backend {backend!r}; choose one of {BACKENDS}.')


def _silent(*args, **kwargs):
    pass


def _make_coco(coco_cls, dataset: dict):
    """Index ``dataset`` with a backend's COCO class without printing or re-reading files."""
    coco = coco_cls()
    if hasattr(coco, 'print_function'):
        coco.print_function = _silent
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _gt_dataset(gt: dict) -> dict:
    # Shallow copies: the backends write an 'ignore' key into every ground-truth dict.
    return dict(images=gt['images'], categories=gt['categories'],
                annotations=[dict(a) for a in gt.get('annotations', [])])


def _dt_dataset(gt: dict, dets: list) -> dict:
    """What ``COCO.loadRes`` builds for box results, without mutating ``dets``.

    Same ids (1-based list order, which decides ties in score sorting), ``area = w * h`` and
    ``iscrowd = 0``; works for an empty list, which ``loadRes`` of pycocotools rejects.
    """
    anns = [{'id': i, 'image_id': det['image_id'], 'category_id': det['category_id'],
             'bbox': det['bbox'], 'score': det['score'], 'area': det['bbox'][2] * det['bbox'][3],
             'iscrowd': 0} for i, det in enumerate(dets, 1)]
    return dict(images=gt['images'], categories=gt['categories'], annotations=anns)


def run_backend(gt: dict, dets: list, backend: str = 'pycocotools',
                img_ids: Optional[Sequence[int]] = None,
                cat_ids: Optional[Sequence[int]] = None):
    """Run one backend's evaluate() and accumulate() on validated inputs.

    Args:
        gt (dict): Validated annotation dict.
        dets (list): Validated detections.
        backend (str): One of :data:`BACKENDS`.
        img_ids (Sequence[int], optional): Images to evaluate; default all images of ``gt``.
        cat_ids (Sequence[int], optional): Categories to evaluate; default all of ``gt``.

    Returns:
        tuple: ``(precision, recall, params)``: the accumulated arrays (``[T, R, K, A, M]`` and
        ``[T, K, A, M]``), equal to pycocotools' for either backend, and the ``params`` used.
    """
    coco_cls, eval_cls = import_backend(backend)
    fast = backend == 'faster-coco-eval'
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _make_coco(coco_cls, _gt_dataset(gt))
        coco_dt = _make_coco(coco_cls, _dt_dataset(gt, dets))
        if fast:
            # separate_eval keeps the per-image results, needed by _pycocotools_precision
            coco_eval = eval_cls(coco_gt, coco_dt, 'bbox', print_function=_silent,
                                 separate_eval=True)
        else:
            coco_eval = eval_cls(coco_gt, coco_dt, 'bbox')
        params = coco_eval.params
        params.maxDets = list(MAX_DETS)
        if img_ids is not None:
            params.imgIds = sorted(img_ids)
        if cat_ids is not None:
            params.catIds = sorted(cat_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
    precision = np.array(coco_eval.eval['precision'], dtype=np.float64)
    recall = np.array(coco_eval.eval['recall'], dtype=np.float64)
    if fast:
        precision = _pycocotools_precision(coco_eval, precision, gt)
    return precision, recall, coco_eval.params


# pycocotools' precision of a detection list whose first entry is a true positive:
# tp / (tp + fp + np.spacing(1)) = 1 / (1 + eps), one ulp below 1.
_FIRST_HIT_PRECISION = 1.0 / (0.0 + 1.0 + np.spacing(1))


def _valid_gt_counts(gt: dict, params) -> np.ndarray:
    """Non-ignored ground truths (``npig``) per category and area range, shape ``[K, A]``."""
    images = {int(i) for i in params.imgIds}
    cat_index = {int(c): k for k, c in enumerate(params.catIds)}
    ranges = np.asarray(params.areaRng, dtype=np.float64)
    counts = np.zeros((len(cat_index), len(ranges)), dtype=np.int64)
    for ann in gt.get('annotations', []):
        k = cat_index.get(ann['category_id'])
        if k is None or ann['iscrowd'] or ann['image_id'] not in images:
            continue
        counts[k] += (ranges[:, 0] <= ann['area']) & (ann['area'] <= ranges[:, 1])
    return counts


def _pycocotools_precision(coco_eval, precision: np.ndarray, gt: dict) -> np.ndarray:
    """Turn faster-coco-eval's precision array into pycocotools' one, bit for bit.

    faster-coco-eval computes the precision of a detection prefix as ``tp / (tp + fp)``, while
    pycocotools computes ``tp / (tp + fp + np.spacing(1))``. The two agree exactly whenever
    ``tp + fp >= 2`` (``n + eps`` rounds to ``n``), and differ only for the one-detection prefix
    when that detection is a true positive: 1.0 against ``1 / (1 + eps)``. After the
    interpolation (running maximum from the right) such a 1.0 survives in a (t, k, a, m) curve
    exactly when no longer prefix is error-free, i.e. when the first two non-ignored detections
    are not both true positives.

    Whether a longer error-free prefix exists is read from a second, cheap C++ accumulation of
    the same per-image results at the recall thresholds ``2 / npig``: its precision there is 1.0
    if and only if some prefix with ``tp >= 2`` has ``fp == 0``. (Recall ``tp / npig`` is
    computed by the same IEEE division on both sides, so ``>= 2 / npig`` means ``tp >= 2``.)
    Where none exists, the 1.0 entries are set to ``1 / (1 + eps)``.
    """
    from faster_coco_eval import faster_eval_api_cpp as _C

    params = coco_eval._paramsEval
    npig = _valid_gt_counts(gt, params)
    if not (npig > 0).any():
        return precision
    probe_thrs = np.unique(2.0 / npig[npig > 0])
    probe_params = copy.copy(params)
    probe_params.recThrs = probe_thrs
    probe = np.asarray(_C.COCOevalAccumulate(probe_params, coco_eval._evalImgs_cpp)['precision'])
    # column of 2 / npig for each (k, a); categories/ranges without ground truth are skipped
    cols = np.searchsorted(probe_thrs, 2.0 / np.where(npig > 0, npig, 1))
    cols = np.where(npig > 0, cols, 0)
    kk, aa = np.indices(npig.shape)
    clean_pair = probe[:, cols, kk, aa, :] == 1.0  # [T, K, A, M]
    needs_fix = ~clean_pair & (npig > 0)[None, :, :, None]
    for t, k, a, m in zip(*np.nonzero(needs_fix)):
        curve = precision[t, :, k, a, m]
        curve[curve == 1.0] = _FIRST_HIT_PRECISION
    return precision


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------
def _select(precision, recall, params, kind, iou, area, max_dets, k=None):
    """The slice pycocotools' ``_summarize`` averages (category ``k`` only if given)."""
    aind = [i for i, lbl in enumerate(params.areaRngLbl) if lbl == area]
    mind = [i for i, m in enumerate(params.maxDets) if m == max_dets]
    cats = slice(None) if k is None else [k]
    if kind == 'ap':
        s = precision
        if iou is not None:
            s = s[np.where(iou == params.iouThrs)[0]]
        return s[:, :, cats, aind, mind]
    s = recall
    if iou is not None:
        s = s[np.where(iou == params.iouThrs)[0]]
    return s[:, cats, aind, mind]


def _mean_valid(s: np.ndarray, missing: float) -> float:
    valid = s[s > -1]
    return missing if len(valid) == 0 else float(np.mean(valid))


def summarize_twelve(precision: np.ndarray, recall: np.ndarray, params) -> Dict[str, float]:
    """The twelve figures of pycocotools' ``COCOeval.summarize()`` for boxes.

    Args:
        precision (np.ndarray): ``eval['precision']``, shape ``[T, R, K, A, M]``.
        recall (np.ndarray): ``eval['recall']``, shape ``[T, K, A, M]``.
        params: The evaluator's params (``iouThrs``, ``areaRngLbl``, ``maxDets``).

    Returns:
        OrderedDict: ``FIGURE_NAMES`` -> float (-1.0 where nothing can be measured, as pycocotools).
    """
    out = OrderedDict()
    for name, _, kind, iou, area, max_dets in TWELVE_FIGURES:
        out[name] = _mean_valid(_select(precision, recall, params, kind, iou, area, max_dets), -1.0)
    return out


def summarize_per_class(precision, recall, params, names: Dict[int, str]) -> Dict[str, dict]:
    """The twelve figures of every category (NaN where the category has no ground truth).

    Args:
        precision (np.ndarray): ``eval['precision']``.
        recall (np.ndarray): ``eval['recall']``.
        params: The evaluator's params (its ``catIds`` give the order of axis K).
        names (dict): Category id -> name.

    Returns:
        OrderedDict: category name -> OrderedDict of the twelve figures.
    """
    out = OrderedDict()
    for k, cat_id in enumerate(params.catIds):
        out[names[int(cat_id)]] = OrderedDict(
            (name, _mean_valid(_select(precision, recall, params, kind, iou, area, md, k),
                               float('nan')))
            for name, _, kind, iou, area, md in TWELVE_FIGURES)
    return out


def evaluate_bbox(gt: Union[str, os.PathLike, dict], dets: Union[str, os.PathLike, list],
                  backend: str = 'pycocotools', img_ids: Optional[Sequence[int]] = None,
                  cat_ids: Optional[Sequence[int]] = None, classwise: bool = False,
                  validate: bool = True) -> CocoEvalResult:
    """Evaluate box detections and return the twelve COCO figures.

    Args:
        gt (str | PathLike | dict): Annotation file or parsed dict.
        dets (str | PathLike | list): Results file or parsed list
            (``{image_id, category_id, bbox: [x, y, w, h], score}``).
        backend (str): ``'pycocotools'`` (reference) or ``'faster-coco-eval'`` (fast, identical
            figures).
        img_ids (Sequence[int], optional): Evaluate only these images; default all of ``gt``.
        cat_ids (Sequence[int], optional): Evaluate only these categories; default all of ``gt``.
        classwise (bool): Also compute the twelve figures per category.
        validate (bool): Validate inputs given as objects (paths are always validated). Turn off
            only for inputs that this module already validated.

    Returns:
        CocoEvalResult: The figures (fractions in [0, 1], -1 where undefined).
    """
    gt_source = os.fspath(gt) if isinstance(gt, (str, os.PathLike)) else None
    if validate or gt_source:
        gt = load_gt(gt)
    if validate or isinstance(dets, (str, os.PathLike)):
        dets = load_detections(dets, gt, gt_source)
    if img_ids is not None:
        unknown = set(img_ids) - {img['id'] for img in gt['images']}
        if unknown:
            raise CocoFormatError(f'img_ids not in the annotation file: {_listed(sorted(unknown))}')
    if cat_ids is not None:
        unknown = set(cat_ids) - {cat['id'] for cat in gt['categories']}
        if unknown:
            raise CocoFormatError(f'cat_ids not in the annotation file: {_listed(sorted(unknown))}')
    precision, recall, params = run_backend(gt, dets, backend, img_ids, cat_ids)
    result = CocoEvalResult(summarize_twelve(precision, recall, params), backend=backend,
                            num_images=len(params.imgIds), num_detections=len(dets))
    if classwise:
        names = {cat['id']: cat['name'] for cat in gt['categories']}
        result.per_class = summarize_per_class(precision, recall, params, names)
    return result
