"""Check an exported detector against mmdet's own PyTorch model.

Three checks, each against mmdet's code path (not the exported graph's PyTorch twin):

* raw head outputs (a ``--raw`` export of the same model) within ``RAW_RTOL`` of
  ``bbox_head(extract_feat(data_preprocessor(...)))``, relative to the output's largest magnitude;
* the detections of ``model.predict`` on the same network input: same labels, boxes within
  ``BOX_ATOL`` pixels, scores within ``SCORE_ATOL``; detections whose score is within
  ``SCORE_ATOL`` of a cut (the score threshold, or the lowest score when ``max_per_img`` are kept)
  may be missing on either side, since rounding can move them across it;
* bbox AP (pycocotools) on the config's test set, PyTorch through mmdet's test pipeline and
  ``test_step`` against onnxruntime through :class:`~iresnet_mmdet.deploy.runtime.OnnxDetector`
  (its own image loading, resize and box mapping), equal within ``AP_ATOL``.
"""
import contextlib
import io
import os.path as osp
import tempfile
import time

import numpy as np
import torch

from ..models.tensor_forward import tensor_forward
from .runtime import OnnxDetector, coco_results, make_session, read_image

RAW_RTOL = 1e-4
BOX_ATOL = 1e-2
SCORE_ATOL = 1e-4
AP_ATOL = 1e-3


def relative_error(actual, expected):
    """``max |actual - expected| / max |expected|``."""
    scale = max(float(np.abs(expected).max()), 1e-12)
    return float(np.abs(actual - expected).max()) / scale


def match_detections(expected, actual, score_thr, max_per_img):
    """Match two detection sets of one image.

    Args:
        expected (dict): ``boxes (n, 4)``, ``scores (n,)``, ``labels (n,)`` numpy arrays.
        actual (dict): The same for the other side.
        score_thr (float): The score threshold both applied.
        max_per_img (int): The most detections per image.

    Returns:
        dict: ``compared`` (detections that must match), ``unmatched``, ``box_err`` and
        ``score_err`` (largest differences among the matched ones).
    """
    stats = dict(compared=0, unmatched=0, box_err=0.0, score_err=0.0)
    for first, second in ((expected, actual), (actual, expected)):
        cut = score_thr
        if len(first['scores']) >= max_per_img or len(second['scores']) >= max_per_img:
            lowest = [float(d['scores'].min()) for d in (first, second) if len(d['scores'])]
            cut = max([cut] + lowest)
        used = np.zeros(len(second['scores']), bool)
        for box, score, label in zip(first['boxes'], first['scores'], first['labels']):
            if score <= cut + SCORE_ATOL:
                continue
            stats['compared'] += 1
            box_err = np.abs(second['boxes'] - box).max(axis=1) if len(used) else np.zeros(0)
            score_err = np.abs(second['scores'] - score)
            ok = ((second['labels'] == label) & (box_err <= BOX_ATOL)
                  & (score_err <= SCORE_ATOL) & ~used)
            if not ok.any():
                stats['unmatched'] += 1
                continue
            best = int(np.argmin(np.where(ok, box_err, np.inf)))
            used[best] = True
            stats['box_err'] = max(stats['box_err'], float(box_err[best]))
            stats['score_err'] = max(stats['score_err'], float(score_err[best]))
    return stats


class Verifier:
    """Compares an exported detector with the PyTorch model it came from.

    Args:
        model (torch.nn.Module): The mmdet detector, in eval mode: the reference.
        cfg (mmengine.Config): Its config.
        onnx_path (str): The exported detections model.
        threads (int, optional): onnxruntime intra-op threads.
        exported_model (torch.nn.Module, optional): The module that was exported, where it differs
            from ``model`` (BN fused); the raw check exports it.
    """

    def __init__(self, model, cfg, onnx_path, threads=None, exported_model=None):
        self.model = model
        self.exported_model = model if exported_model is None else exported_model
        self.cfg = cfg
        self.onnx = OnnxDetector(onnx_path, threads)
        self.threads = threads
        self.max_per_img = int(model.bbox_head.test_cfg['max_per_img'])

    # ---- inputs ---------------------------------------------------------------------------------

    def dataset(self):
        """The config's test dataset with its test pipeline, or None where its files are missing."""
        from mmdet.registry import DATASETS
        dataset_cfg = self.cfg.test_dataloader.dataset
        root = dataset_cfg.get('data_root') or ''
        ann_file = osp.join(root, dataset_cfg.get('ann_file', ''))
        if not osp.isfile(ann_file):
            return None
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' "loading annotations"
            return DATASETS.build(dataset_cfg)

    def network_inputs(self, num_images, dataset=None):
        """``(N, 3, H, W)`` float32 network inputs: resized test images, or synthetic ones.

        Both get uniform noise of +-0.5 grey levels: in a flat image region many priors see the
        same pixels and get exactly the same score, and the order in which NMS visits exact ties
        is implementation-defined (mmcv sorts, onnxruntime keeps the index order).
        """
        if dataset is None:
            return synthetic_inputs(num_images, (self.onnx.height, self.onnx.width))
        paths = [dataset.get_data_info(i)['img_path']
                 for i in range(min(num_images, len(dataset)))]
        images = np.stack([self.onnx.preprocess(read_image(p))[0] for p in paths])
        return tie_breaking_noise(images)

    # ---- checks ---------------------------------------------------------------------------------

    def check_raw(self, raw_onnx_path, images):
        """Largest relative error of the raw head outputs over the images."""
        return raw_error(self.model, raw_onnx_path, images, self.threads)

    def check_detections(self, images):
        """Detection matching (:func:`match_detections`) summed over the images."""
        total = dict(compared=0, unmatched=0, box_err=0.0, score_err=0.0)
        onnx_times, torch_times = [], []
        for image in images:
            start = time.perf_counter()
            boxes, scores, labels, count = self.onnx.run(image[None])
            onnx_times.append(time.perf_counter() - start)
            n = int(count[0])
            actual = dict(boxes=boxes[0, :n], scores=scores[0, :n], labels=labels[0, :n])
            start = time.perf_counter()
            expected = torch_detections(self.model, image)
            torch_times.append(time.perf_counter() - start)
            stats = match_detections(expected, actual, self.onnx.meta['score_thr'],
                                     self.max_per_img)
            for key in ('compared', 'unmatched'):
                total[key] += stats[key]
            for key in ('box_err', 'score_err'):
                total[key] = max(total[key], stats[key])
        # median seconds per image, batch 1, from network input to detections
        total.update(onnx_s=float(np.median(onnx_times)), torch_s=float(np.median(torch_times)))
        return total

    @torch.no_grad()
    def check_ap(self, dataset, num_images):
        """bbox AP of PyTorch (mmdet test pipeline) and of onnxruntime on the first images."""
        from mmengine.dataset import pseudo_collate
        torch_results, onnx_results, image_ids = [], [], []
        for index in range(min(num_images, len(dataset))):
            data = dataset[index]
            sample = self.model.test_step(pseudo_collate([data]))[0]
            pred = sample.pred_instances
            image_id = sample.img_id
            image_ids.append(image_id)
            torch_results += coco_results(
                image_id, dict(boxes=pred.bboxes.numpy(), scores=pred.scores.numpy(),
                               labels=pred.labels.numpy()), dataset.cat_ids)
            detections = self.onnx.detect(read_image(sample.img_path))
            onnx_results += coco_results(image_id, detections, dataset.cat_ids)
        return (coco_bbox_ap(dataset.ann_file, torch_results, image_ids),
                coco_bbox_ap(dataset.ann_file, onnx_results, image_ids))

    def run(self, num_images, raw_onnx_path=None):
        """All checks on ``num_images`` images.

        Args:
            num_images (int): Images to compare.
            raw_onnx_path (str, optional): The ``--raw`` export; exported here when not given.

        Returns:
            dict: ``raw_rel_err``, the :meth:`check_detections` figures, ``ap_torch``/``ap_onnx``
            (None without a test set), ``images``, ``source`` and ``passed``.
        """
        dataset = self.dataset()
        images = self.network_inputs(num_images, dataset)
        report = dict(images=len(images), source='test set' if dataset else 'synthetic')
        with tempfile.TemporaryDirectory() as tmp:
            if raw_onnx_path is None:
                raw_onnx_path = osp.join(tmp, 'raw.onnx')
                export_raw(self.exported_model, raw_onnx_path, (self.onnx.height, self.onnx.width))
            report['raw_rel_err'] = self.check_raw(raw_onnx_path, images)
        report.update(self.check_detections(images))
        report['ap_torch'] = report['ap_onnx'] = None
        if dataset is not None:
            report['ap_torch'], report['ap_onnx'] = self.check_ap(dataset, num_images)
        report['passed'] = (report['raw_rel_err'] <= RAW_RTOL and report['unmatched'] == 0
                            and (dataset is None
                                 or abs(report['ap_torch'] - report['ap_onnx']) <= AP_ATOL))
        return report


def preprocessed(model, image):
    """mmdet's data preprocessor on one ``(3, H, W)`` network input: ``(inputs, samples)``."""
    from mmdet.structures import DetDataSample
    shape = tuple(image.shape[-2:])
    sample = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape,
                                         scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(
        {'inputs': [torch.from_numpy(image)], 'data_samples': [sample]}, False)
    return data['inputs'], data['data_samples']


@torch.no_grad()
def torch_raw(model, image):
    """mmdet's head outputs (all ``cls_score`` levels, then all ``bbox_pred``) as arrays."""
    inputs, _ = preprocessed(model, image)
    cls_scores, bbox_preds = tensor_forward(model, inputs)[:2]
    return [t.numpy() for t in list(cls_scores) + list(bbox_preds)]


@torch.no_grad()
def torch_detections(model, image):
    """``model.predict`` on one network input, boxes in its pixels."""
    inputs, samples = preprocessed(model, image)
    pred = model.predict(inputs, samples, rescale=False)[0].pred_instances
    return dict(boxes=pred.bboxes.numpy(), scores=pred.scores.numpy(),
                labels=pred.labels.numpy())


def raw_error(model, raw_onnx_path, images, threads=None):
    """Largest relative error of a ``--raw`` export's outputs over ``(N, 3, H, W)`` images."""
    session = make_session(raw_onnx_path, threads)
    worst = 0.0
    for image in images:
        actual = session.run(None, {session.get_inputs()[0].name: image[None]})
        for got, want in zip(actual, torch_raw(model, image)):
            worst = max(worst, relative_error(got, want))
    return worst


def synthetic_inputs(num_images, input_shape):
    """Deterministic ``(N, 3, H, W)`` inputs: blocky colour noise, 0-255, plus fine noise."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, (num_images, 3, 8, 8)).astype(np.float32)
    height, width = input_shape
    rows = np.linspace(0, 7, height).round().astype(int)
    cols = np.linspace(0, 7, width).round().astype(int)
    return tie_breaking_noise(coarse[:, :, rows][:, :, :, cols])


def tie_breaking_noise(images, seed=0):
    """``images`` plus deterministic uniform noise in [-0.5, 0.5) (see ``network_inputs``)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-0.5, 0.5, images.shape).astype(np.float32)
    return np.ascontiguousarray(images + noise, dtype=np.float32)


def export_raw(model, path, input_shape):
    """A ``--raw`` export of ``model`` to ``path`` (for the raw-output check)."""
    from .export import build_graph, export_onnx
    export_onnx(build_graph(model, input_shape, raw=True), path, input_shape, {})


def coco_bbox_ap(ann_file, results, image_ids):
    """COCO bbox AP (IoU 0.50:0.95) of ``results`` on ``image_ids`` (pycocotools)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        if not results:
            return 0.0
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, 'bbox')
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return max(float(evaluator.stats[0]), 0.0)


def format_report(report):
    """The verification report as printed lines."""
    lines = [f"verify on {report['images']} images ({report['source']}):"]
    if 'raw_rel_err' in report:
        lines.append(f"  raw head outputs: max relative error {report['raw_rel_err']:.2e} "
                     f'(limit {RAW_RTOL:g})')
    if 'compared' in report:
        lines.append(f"  detections: {report['compared'] - report['unmatched']}/"
                     f"{report['compared']} matched, max box error {report['box_err']:.2e} px "
                     f"(limit {BOX_ATOL:g}), max score error {report['score_err']:.2e} "
                     f'(limit {SCORE_ATOL:g})')
    if 'onnx_s' in report:
        lines.append(f"  speed (batch 1, median of {report['images']}): PyTorch "
                     f"{1000 * report['torch_s']:.1f} ms/image, onnxruntime "
                     f"{1000 * report['onnx_s']:.1f} ms/image")
    if report.get('ap_torch') is not None:
        lines.append(f"  bbox AP: PyTorch {report['ap_torch']:.4f}, onnxruntime "
                     f"{report['ap_onnx']:.4f} (limit {AP_ATOL:g} apart)")
    elif 'compared' in report:
        lines.append('  bbox AP: not computed (the test set of the config is not there)')
    lines.append('  result: ' + ('PASSED' if report['passed'] else 'FAILED'))
    return lines
