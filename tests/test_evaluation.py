"""COCO evaluation: both backends give pycocotools' twelve figures; bad inputs fail clearly."""
import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest

from iresnet_mmdet.evaluation import coco_eval
from iresnet_mmdet.coco_figures import FIGURE_NAMES
from iresnet_mmdet.evaluation.coco_eval import CocoFormatError, evaluate_bbox, load_gt
from iresnet_mmdet.evaluation.synthetic import make_small_case


def direct_pycocotools(tmp_path, gt, dets, cat_ids=None):
    """pycocotools' own COCOeval on files, as its README does it: the reference stats.

    ``cat_ids``: evaluate only these categories (``params.catIds``), e.g. one for per-class AP.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt_file, dt_file = tmp_path / 'gt.json', tmp_path / 'dt.json'
    gt_file.write_text(json.dumps(gt))
    dt_file.write_text(json.dumps(dets))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_file))
        if dets:
            coco_dt = coco_gt.loadRes(str(dt_file))
        else:  # loadRes cannot load an empty list
            coco_dt = COCO()
            coco_dt.dataset = dict(images=gt['images'], categories=gt['categories'],
                                   annotations=[])
            coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, 'bbox')
        if cat_ids is not None:
            coco_eval.params.catIds = list(cat_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


def pycocotools_per_class(tmp_path, gt, dets):
    """Category name -> pycocotools' twelve stats with ``params.catIds=[id]``; its -1 ("nothing
    to measure") as NaN, the value our per-class figures use."""
    return {cat['name']: [math.nan if v == -1 else v
                          for v in direct_pycocotools(tmp_path, gt, dets, [cat['id']])]
            for cat in gt['categories']}


def same_figures(ours, expected):
    """Exact equality of two lists of figures, NaN equal to NaN."""
    def key(values):
        return ['nan' if math.isnan(v) else v for v in values]
    return key(ours) == key(expected)


def large_objects_only_case():
    """Two images with only large objects: AP/AR small and medium are -1 in pycocotools."""
    gt = dict(images=[dict(id=7, width=640, height=480), dict(id=9, width=640, height=480)],
              categories=[dict(id=3, name='car'), dict(id=5, name='dog')],
              annotations=[
                  dict(id=1, image_id=7, category_id=3, bbox=[10, 10, 200, 150], area=30000.0,
                       iscrowd=0),
                  dict(id=2, image_id=9, category_id=5, bbox=[50, 40, 300, 200], area=60000.0,
                       iscrowd=0),
                  dict(id=3, image_id=9, category_id=3, bbox=[0, 0, 400, 400], area=160000.0,
                       iscrowd=1),
              ])
    dets = [dict(image_id=7, category_id=3, bbox=[12, 8, 200, 150], score=0.9),
            dict(image_id=9, category_id=5, bbox=[50, 40, 100, 200], score=0.8),
            dict(image_id=9, category_id=3, bbox=[10, 10, 300, 300], score=0.7),
            dict(image_id=7, category_id=5, bbox=[1, 1, 5, 5], score=0.3)]
    return gt, dets


CASES = {
    'empty detections': lambda: make_small_case(seed=1, mode='empty'),
    'perfect detections': lambda: make_small_case(seed=2, mode='perfect'),
    'noisy detections': lambda: make_small_case(seed=3, mode='noisy'),
    'noisy, other seed': lambda: make_small_case(seed=4, mode='noisy', num_categories=9),
    'crowd annotations': lambda: make_small_case(seed=5, crowd_fraction=0.3),
    'categories without detections':
        lambda: make_small_case(seed=6, categories_without_detections=3),
    'over 100 detections per image': lambda: make_small_case(
        seed=7, num_images=6, num_categories=1, max_dets=10000, false_positives_per_image=150),
    'undefined ranges (-1)': large_objects_only_case,
}


@pytest.mark.parametrize('case', list(CASES))
def test_backends_identical_and_equal_to_pycocotools(case, tmp_path):
    gt, dets = CASES[case]()
    expected = direct_pycocotools(tmp_path, gt, dets)
    dets_before = copy.deepcopy(dets)
    for backend in ('pycocotools', 'faster-coco-eval'):
        figures = evaluate_bbox(gt, dets, backend=backend).figures
        assert list(figures) == list(FIGURE_NAMES)
        # bit-identical, not approximately equal
        assert list(figures.values()) == expected, backend
    assert dets == dets_before, 'evaluation must not modify the detections'


def _tiny_cases(n):
    """Small random cases where a curve often starts with one hit then a miss."""
    for seed in range(n):
        rng = np.random.default_rng(1000 + seed)
        gt, dets = make_small_case(seed=1000 + seed, num_images=int(rng.integers(1, 12)),
                                   num_categories=int(rng.integers(1, 5)),
                                   crowd_fraction=float(rng.choice([0, 0.2])),
                                   false_positives_per_image=float(rng.choice([0, 2, 20])))
        if seed % 3 == 0:  # tied scores: the stable sort order must match too
            dets = [dict(d, score=round(d['score'], 1)) for d in dets]
        yield gt, dets


def test_full_precision_recall_arrays_bit_identical(monkeypatch):
    """The whole accumulated arrays agree, not only their means; without the correction of
    faster-coco-eval's precision (tp / (tp + fp) instead of pycocotools' tp / (tp + fp + eps))
    they would not."""
    cases = list(_tiny_cases(40))
    for gt, dets in cases:
        ref_p, ref_r, _ = coco_eval.run_backend(gt, dets, 'pycocotools')
        fast_p, fast_r, _ = coco_eval.run_backend(gt, dets, 'faster-coco-eval')
        assert np.array_equal(ref_p, fast_p) and np.array_equal(ref_r, fast_r)
    monkeypatch.setattr(coco_eval, '_pycocotools_precision', lambda ev, precision, gt: precision)
    uncorrected = sum(
        not np.array_equal(coco_eval.run_backend(gt, dets, 'pycocotools')[0],
                           coco_eval.run_backend(gt, dets, 'faster-coco-eval')[0])
        for gt, dets in cases)
    assert uncorrected >= 10


def test_cases_exercise_what_they_claim():
    """Guards the generated cases: otherwise the equality test above could pass vacuously."""
    gt, _ = CASES['crowd annotations']()
    assert sum(a['iscrowd'] for a in gt['annotations']) >= 10
    _, dets = CASES['over 100 detections per image']()
    per_image = np.bincount([d['image_id'] for d in dets])
    assert per_image.max() > 100
    gt, dets = CASES['categories without detections']()
    assert len({d['category_id'] for d in dets}) == len(gt['categories']) - 3
    perfect = evaluate_bbox(*CASES['perfect detections']()).figures
    assert perfect['AP'] == 1.0 and perfect['AR100'] == 1.0 and perfect['AR1'] < 1.0
    assert evaluate_bbox(*CASES['empty detections']()).figures['AP'] == 0.0
    undefined = evaluate_bbox(*large_objects_only_case()).figures
    assert undefined['APs'] == undefined['ARm'] == -1.0 and undefined['APl'] > 0


def test_files_and_subsets(tmp_path):
    gt, dets = make_small_case(seed=8)
    (tmp_path / 'gt.json').write_text(json.dumps(gt))
    (tmp_path / 'dt.json').write_text(json.dumps(dets))
    from_files = evaluate_bbox(str(tmp_path / 'gt.json'), str(tmp_path / 'dt.json'))
    assert from_files.figures == evaluate_bbox(gt, dets).figures
    assert from_files.num_images == len(gt['images'])

    half = [img['id'] for img in gt['images'][:20]]
    subset = {b: evaluate_bbox(gt, dets, backend=b, img_ids=half).figures
              for b in ('pycocotools', 'faster-coco-eval')}
    assert subset['pycocotools'] == subset['faster-coco-eval']
    assert subset['pycocotools'] != from_files.figures


@pytest.mark.parametrize('backend', ['pycocotools', 'faster-coco-eval'])
def test_per_class_figures_equal_pycocotools_for_each_category(backend, tmp_path):
    cases = [make_small_case(seed=9, num_categories=4, categories_without_detections=1,
                             crowd_fraction=0.2), large_objects_only_case()]
    seen = []
    for gt, dets in cases:
        per_class = evaluate_bbox(gt, dets, backend=backend, classwise=True).per_class
        assert list(per_class) == [
            c['name'] for c in sorted(gt['categories'], key=lambda c: c['id'])]
        expected = pycocotools_per_class(tmp_path, gt, dets)
        for name, figures in per_class.items():
            assert list(figures) == list(FIGURE_NAMES)
            assert same_figures(list(figures.values()), expected[name]), name
        seen += expected.values()
    # the cases have what per-class figures must get right: a category without detections
    # (AP 0), categories with different figures, and undefined area ranges (NaN)
    assert [0.0] * 12 in seen and len({str(v) for v in seen}) == len(seen)
    assert any(math.isnan(v) for v in sum(seen, []))


def test_summary_lines_match_pycocotools_print(tmp_path):
    gt, dets = make_small_case(seed=10)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), 'bbox')
        coco_eval.evaluate()
        coco_eval.accumulate()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_eval.summarize()
    assert evaluate_bbox(gt, dets).summary_lines() == out.getvalue().splitlines()


# ------------------------------------------------------------------------------------------------
# Bad input: one CocoFormatError naming the problem
# ------------------------------------------------------------------------------------------------
def _bad_detections():
    gt, dets = make_small_case(seed=11, num_images=5)
    return gt, dets


@pytest.mark.parametrize('mutate, message', [
    (lambda gt, d: d.append(dict(image_id=999999, category_id=d[0]['category_id'],
                                 bbox=[0, 0, 5, 5], score=0.5)),
     r'1 image id\(s\) are not in the annotation file: 999999'),
    (lambda gt, d: d.append(dict(image_id=d[0]['image_id'], category_id=0, bbox=[0, 0, 5, 5],
                                 score=0.5)),
     r'category id\(s\) are not in the annotation file: 0\. Known ids'),
    (lambda gt, d: d[0].pop('score'), r"detection 0 lacks \['score'\]"),
    (lambda gt, d: d[1].update(bbox=[1, 2, 3]), r'detection 1: bbox must be a list'),
    (lambda gt, d: d[1].update(bbox=[1, 2, float('nan'), 3]), r'4 finite numbers'),
    (lambda gt, d: d[2].update(bbox=[10, 10, 5, -5]), r'width and height must be >= 0'),
])
def test_bad_detections(mutate, message):
    gt, dets = _bad_detections()
    mutate(gt, dets)
    for backend in ('pycocotools', 'faster-coco-eval'):
        with pytest.raises(CocoFormatError, match=message):
            evaluate_bbox(gt, dets, backend=backend)


def test_bad_detections_file(tmp_path):
    gt, dets = _bad_detections()
    gt_file = tmp_path / 'instances_val.json'
    gt_file.write_text(json.dumps(gt))
    dets[0]['image_id'] = 424242
    (tmp_path / 'dets.json').write_text(json.dumps(dets))
    with pytest.raises(CocoFormatError,
                       match=r"detections file '.*dets.json'.*not in the annotation file "
                             r"'.*instances_val.json': 424242"):
        evaluate_bbox(str(gt_file), str(tmp_path / 'dets.json'))
    with pytest.raises(CocoFormatError, match='looks like an annotation file'):
        evaluate_bbox(str(gt_file), str(gt_file))


@pytest.mark.parametrize('mutate, message', [
    (lambda gt: gt.pop('images'), r"has no 'images' list"),
    (lambda gt: gt['annotations'][0].pop('area'), r"annotation id 1 has no numeric 'area'"),
    (lambda gt: gt['annotations'][1].update(id=1), r'duplicate annotation ids 1'),
    (lambda gt: gt['annotations'][0].update(image_id=5), r'refers to image_id 5, which is not'),
    (lambda gt: gt['annotations'][0].update(category_id=1000), r'category_id 1000, which is not'),
    (lambda gt: gt['annotations'][0].update(bbox='1 2 3 4'), r'bbox must be a list'),
    (lambda gt: gt['annotations'][0].pop('iscrowd'), r"needs 'iscrowd' 0 or 1"),
    (lambda gt: gt['categories'][0].pop('name'), r"has no 'name'"),
    (lambda gt: gt['images'][0].update(id='a'), r"image\[0\] has no integer 'id'"),
])
def test_malformed_annotation_file(tmp_path, mutate, message):
    gt, dets = _bad_detections()
    mutate(gt)
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(gt))
    with pytest.raises(CocoFormatError, match=r"annotation file '.*ann.json'.*" + message):
        evaluate_bbox(str(path), dets)


def test_unreadable_files(tmp_path):
    path = tmp_path / 'ann.json'
    path.write_text('{"images": [')
    with pytest.raises(CocoFormatError, match="annotation file '.*ann.json' is not valid JSON"):
        load_gt(str(path))
    with pytest.raises(CocoFormatError, match='does not exist'):
        load_gt(str(tmp_path / 'missing.json'))
    path.write_text('[]')
    with pytest.raises(CocoFormatError, match='is a JSON list'):
        load_gt(str(path))


def test_unknown_backend():
    gt, dets = _bad_detections()
    with pytest.raises(ValueError, match='unknown COCO evaluation backend'):
        evaluate_bbox(gt, dets, backend='cocoapi')
