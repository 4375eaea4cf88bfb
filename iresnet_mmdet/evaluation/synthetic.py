"""Deterministic synthetic COCO cases (annotations + detections) for tests and benchmarks.

The default sizes of :func:`make_coco_case` mirror COCO val2017 for box evaluation: 5,000 images,
about 36,000 ground-truth boxes over 80 categories (with non-contiguous category ids, as COCO's
1..90), a mix of small, medium and large objects, a few crowd regions, and up to 100 detections
per image.
"""
from typing import Dict, Tuple

import numpy as np


def _category_ids(rng: np.random.Generator, num_categories: int) -> list:
    pool = np.arange(1, max(91, num_categories + 1))
    return sorted(int(c) for c in rng.choice(pool, num_categories, replace=False))


def _random_boxes(rng, n: int, width: int, height: int) -> np.ndarray:
    """``n`` boxes ``[x, y, w, h]`` inside the image, sizes log-uniform from ~6 to ~400 px."""
    side = np.exp(rng.uniform(np.log(6), np.log(400), n))
    aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5), n))
    w = np.minimum(side * np.sqrt(aspect), width - 1)
    h = np.minimum(side / np.sqrt(aspect), height - 1)
    x = rng.uniform(0, width - w)
    y = rng.uniform(0, height - h)
    return np.round(np.stack([x, y, w, h], 1), 2)


def _jitter(rng, box: np.ndarray, scale: float) -> list:
    x, y, w, h = box
    dx, dy, dw, dh = rng.normal(0, scale, 4)
    w2, h2 = max(1.0, w * np.exp(dw)), max(1.0, h * np.exp(dh))
    return [round(float(v), 2) for v in (x + dx * w, y + dy * h, w2, h2)]


def make_coco_case(num_images: int = 5000, num_categories: int = 80, boxes_per_image: float = 7.3,
                   crowd_fraction: float = 0.01, max_dets: int = 100, mode: str = 'noisy',
                   seed: int = 0, categories_without_detections: int = 0,
                   false_positives_per_image: float = 60.0) -> Tuple[Dict, list]:
    """Build a COCO annotation dict and a matching detections list.

    Args:
        num_images (int): Number of images.
        num_categories (int): Number of categories (ids drawn from 1..90 when <= 90).
        boxes_per_image (float): Mean of the Poisson number of ground-truth boxes per image.
        crowd_fraction (float): Fraction of ground-truth boxes marked ``iscrowd=1``.
        max_dets (int): At most this many detections per image (highest scores kept).
        mode (str): ``'noisy'`` (jittered true positives, missed objects, wrong classes and
            false positives), ``'perfect'`` (every ground-truth box, exactly, score 1 ... 0.5),
            or ``'empty'`` (no detections).
        seed (int): Random seed; equal arguments give equal outputs.
        categories_without_detections (int): Drop every detection of this many categories.
        false_positives_per_image (float): Mean number of unmatched low-score boxes per image in
            ``'noisy'`` mode (a detector with a 0.05 score threshold emits dozens).

    Returns:
        tuple: ``(annotation dict, detections list)``.
    """
    if mode not in ('noisy', 'perfect', 'empty'):
        raise ValueError(f"mode must be 'noisy', 'perfect' or 'empty', got {mode!r}")
    rng = np.random.default_rng(seed)
    cat_ids = _category_ids(rng, num_categories)
    categories = [dict(id=c, name=f'class_{c}', supercategory='synthetic') for c in cat_ids]
    images, anns, dets = [], [], []
    for i in range(num_images):
        img_id = 1 + 3 * i  # non-contiguous, like COCO's
        width, height = int(rng.integers(240, 641)), int(rng.integers(240, 641))
        images.append(dict(id=img_id, width=width, height=height, file_name=f'{img_id:012d}.jpg'))
        n = int(rng.poisson(boxes_per_image))
        boxes = _random_boxes(rng, n, width, height)
        labels = rng.choice(cat_ids, n)
        crowd = rng.random(n) < crowd_fraction
        img_dets = []
        for box, label, is_crowd in zip(boxes, labels, crowd):
            anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=int(label),
                             bbox=[float(v) for v in box], area=float(box[2] * box[3]),
                             iscrowd=int(is_crowd)))
            img_dets.extend(_detections_for(rng, mode, box, int(label), cat_ids))
        if mode == 'noisy':
            num_fp = int(rng.poisson(false_positives_per_image))
            fp_scores = 0.05 + 0.6 * rng.beta(1, 6, num_fp)
            fp_labels = rng.choice(cat_ids, num_fp)
            for box, score, label in zip(_random_boxes(rng, num_fp, width, height), fp_scores,
                                         fp_labels):
                img_dets.append((float(score), int(label), [float(v) for v in box]))
        img_dets.sort(key=lambda d: -d[0])
        dets.extend(dict(image_id=img_id, category_id=c, bbox=b, score=s)
                    for s, c, b in img_dets[:max_dets])
    if categories_without_detections:
        dropped = set(cat_ids[:categories_without_detections])
        dets = [d for d in dets if d['category_id'] not in dropped]
    gt = dict(info=dict(description='synthetic COCO case'), images=images, annotations=anns,
              categories=categories)
    return gt, dets


def _detections_for(rng, mode: str, box, label: int, cat_ids) -> list:
    """Detections ``(score, category_id, bbox)`` produced for one ground-truth box."""
    if mode == 'empty':
        return []
    if mode == 'perfect':
        return [(round(float(rng.uniform(0.5, 1.0)), 4), label, [float(v) for v in box])]
    out = []
    if rng.random() < 0.75:  # found, with localisation noise shrinking with confidence
        score = float(rng.beta(4, 2))
        out.append((score, label, _jitter(rng, box, 0.25 * (1.1 - score))))
        if rng.random() < 0.3:  # duplicate
            out.append((score * float(rng.uniform(0.3, 0.9)), label, _jitter(rng, box, 0.15)))
    if rng.random() < 0.1:  # confused class
        out.append((float(rng.uniform(0.05, 0.7)), int(rng.choice(cat_ids)),
                    _jitter(rng, box, 0.1)))
    return out


def make_small_case(seed: int = 0, mode: str = 'noisy', num_images: int = 40,
                    num_categories: int = 6, crowd_fraction: float = 0.05,
                    categories_without_detections: int = 0, max_dets: int = 100,
                    false_positives_per_image: float = 4.0) -> Tuple[Dict, list]:
    """A small :func:`make_coco_case` for unit tests (fractions of a second per backend)."""
    return make_coco_case(num_images=num_images, num_categories=num_categories,
                          boxes_per_image=6.0, crowd_fraction=crowd_fraction, max_dets=max_dets,
                          mode=mode, seed=seed, false_positives_per_image=false_positives_per_image,
                          categories_without_detections=categories_without_detections)
