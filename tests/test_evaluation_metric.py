"""CocoTableMetric inside MMDetection's evaluator: registered, exact figures, clear errors."""
import json
import math

import pytest
import torch

import iresnet_mmdet  # noqa: F401  (registers CocoTableMetric)
from iresnet_mmdet.coco_figures import FIGURE_NAMES
from iresnet_mmdet.evaluation.coco_eval import CocoFormatError
from iresnet_mmdet.evaluation.synthetic import make_small_case
from mmdet.registry import METRICS

from test_evaluation import direct_pycocotools, pycocotools_per_class

KEYS = [f'coco/bbox_{n}' for n in FIGURE_NAMES] + ['coco/bbox_mAP']


def _classes(gt):
    return tuple(c['name'] for c in gt['categories'])


def _samples(gt, dets):
    """Data samples as the model's test step gives them to the evaluator (xyxy boxes, labels)."""
    label_of = {c['id']: i for i, c in enumerate(gt['categories'])}
    samples = []
    for img in gt['images']:
        mine = [d for d in dets if d['image_id'] == img['id']]
        boxes = torch.tensor([[d['bbox'][0], d['bbox'][1], d['bbox'][0] + d['bbox'][2],
                               d['bbox'][1] + d['bbox'][3]] for d in mine],
                             dtype=torch.float32).reshape(-1, 4)
        samples.append(dict(
            img_id=img['id'], ori_shape=(img['height'], img['width']),
            pred_instances=dict(bboxes=boxes,
                                scores=torch.tensor([d['score'] for d in mine]),
                                labels=torch.tensor([label_of[d['category_id']] for d in mine],
                                                    dtype=torch.long))))
    return samples


def _run(metric, gt, dets, batch=7):
    metric.dataset_meta = dict(classes=_classes(gt))
    samples = _samples(gt, dets)
    for i in range(0, len(samples), batch):
        metric.process({}, samples[i:i + batch])
    return metric.evaluate(len(samples))


@pytest.fixture
def case(tmp_path):
    gt, dets = make_small_case(seed=12, num_images=30, num_categories=5)
    dets = [d for d in dets if d['image_id'] != gt['images'][3]['id']]  # an image without output
    ann = tmp_path / 'instances_val.json'
    ann.write_text(json.dumps(gt))
    return gt, dets, str(ann)


@pytest.mark.parametrize('backend', ['pycocotools', 'faster-coco-eval'])
def test_metric_reports_pycocotools_figures(case, tmp_path, backend):
    gt, dets, ann = case
    prefix = str(tmp_path / 'out' / 'run')
    (tmp_path / 'out').mkdir()
    metric = METRICS.build(dict(type='CocoTableMetric', ann_file=ann, backend=backend,
                                outfile_prefix=prefix))
    results = _run(metric, gt, dets)
    assert list(results) == KEYS
    # the detections the metric wrote (float32 boxes), evaluated by pycocotools itself
    written = json.loads(open(prefix + '.bbox.json').read())
    assert len(written) == len(dets)
    expected = direct_pycocotools(tmp_path, gt, written)
    assert [results[k] for k in KEYS[:12]] == expected
    assert results['coco/bbox_mAP'] == results['coco/bbox_AP']
    saved = json.loads(open(prefix + '.metrics.json').read())
    assert list(saved['bbox'].values()) == expected
    assert saved['backend'] == backend and saved['num_images'] == len(gt['images'])


def test_metric_classwise_and_inherited_coco_metric_keys(case, tmp_path):
    gt, dets, ann = case
    prefix = str(tmp_path / 'run')
    # the keys a config inherits from mmdet's CocoMetric evaluator must be accepted
    metric = METRICS.build(dict(type='CocoTableMetric', ann_file=ann, metric='bbox',
                                format_only=False, backend_args=None, classwise=True,
                                backend='faster-coco-eval', outfile_prefix=prefix))
    results = _run(metric, gt, dets, batch=30)
    per_class = [k for k in results if k.startswith('coco/bbox_AP_')]
    assert len(per_class) == len(gt['categories'])
    # pycocotools with params.catIds=[id], on the detections the metric wrote
    written = json.loads(open(prefix + '.bbox.json').read())
    expected = pycocotools_per_class(tmp_path, gt, written)
    for cat in gt['categories']:
        assert results[f"coco/bbox_AP_{cat['name']}"] == expected[cat['name']][0]
    saved = json.loads(open(prefix + '.metrics.json').read())
    for name, figures in saved['per_class'].items():
        assert [None if math.isnan(v) else v for v in figures.values()] == [
            None if math.isnan(v) else v for v in expected[name]], name


def test_metric_without_ann_file_converts_ground_truth():
    gt, _ = make_small_case(seed=13, num_images=4, num_categories=3, crowd_fraction=0)
    classes = _classes(gt)
    label_of = {c['id']: i for i, c in enumerate(gt['categories'])}
    samples = []
    for img in gt['images']:
        anns = [a for a in gt['annotations'] if a['image_id'] == img['id']]
        xyxy = [[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                 a['bbox'][1] + a['bbox'][3]] for a in anns]
        samples.append(dict(
            img_id=img['id'], ori_shape=(img['height'], img['width']),
            instances=[dict(bbox=b, bbox_label=label_of[a['category_id']], ignore_flag=0)
                       for b, a in zip(xyxy, anns)],
            pred_instances=dict(bboxes=torch.tensor(xyxy).reshape(-1, 4),
                                scores=torch.ones(len(anns)),
                                labels=torch.tensor([label_of[a['category_id']] for a in anns],
                                                    dtype=torch.long))))
    metric = METRICS.build(dict(type='CocoTableMetric'))
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert results['coco/bbox_AP'] == 1.0 and results['coco/bbox_AR100'] == 1.0


def test_metric_errors(case, tmp_path):
    gt, dets, ann = case
    bad = dict(gt, annotations=[dict(a) for a in gt['annotations']])
    del bad['annotations'][2]['area']
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    # a malformed annotation file fails when the evaluator is built, before any inference
    with pytest.raises(CocoFormatError, match=r"annotation id 3 has no numeric 'area'"):
        METRICS.build(dict(type='CocoTableMetric', ann_file=str(tmp_path / 'bad.json')))
    with pytest.raises(ValueError, match='unknown backend'):
        METRICS.build(dict(type='CocoTableMetric', ann_file=ann, backend='fast'))
    with pytest.raises(ValueError, match="boxes only"):
        METRICS.build(dict(type='CocoTableMetric', ann_file=ann, metric='segm'))

    metric = METRICS.build(dict(type='CocoTableMetric', ann_file=ann))
    metric.dataset_meta = dict(classes=_classes(gt) + ('unicorn', ))
    metric.process({}, _samples(gt, dets)[:2])
    with pytest.raises(CocoFormatError, match=r"dataset classes \['unicorn'\] are not categories"):
        metric.evaluate(2)

    metric = METRICS.build(dict(type='CocoTableMetric', ann_file=ann))
    metric.dataset_meta = dict(classes=_classes(gt))
    samples = _samples(gt, dets)[:2]
    samples[1]['img_id'] = 777777
    metric.process({}, samples)
    with pytest.raises(CocoFormatError, match=r'1 tested image ids are not in the annotation'):
        metric.evaluate(2)
