"""Run an exported detector with onnxruntime: no torch, no mmdet (numpy, OpenCV, onnxruntime).

``tools/deployment/onnx_infer.py`` loads this file by its path, without importing the
``iresnet_mmdet`` package (whose ``__init__`` imports mmdet), so it must only import numpy, cv2,
onnxruntime and the standard library.

The exported graph takes ``images (B, 3, H, W)``, float32, BGR, 0-255, already resized to the
network input; :class:`OnnxDetector` does that resize as the config's test pipeline does (a plain
resize, or for ``keep_ratio`` configs a resize that keeps the aspect ratio, padded at the bottom and
right) and maps the boxes back to the original image.
"""
import json
import os.path as osp

import numpy as np

METADATA_PREFIX = 'iresnet_mmdet.'
OUTPUTS_DETECTIONS = 'detections'
OUTPUTS_RAW = 'raw'
_REQUIRED_KEYS = ('outputs', 'classes', 'score_thr', 'input_shape', 'keep_ratio', 'pad_value')


class DeployError(Exception):
    """Bad input to the ONNX runtime tools (a foreign model, an unreadable image)."""


def make_session(onnx_path, threads=None):
    """An onnxruntime CPU session.

    Args:
        onnx_path (str): The ONNX file.
        threads (int, optional): Intra-op threads (onnxruntime's default: one per core).

    Returns:
        onnxruntime.InferenceSession: The session.
    """
    import onnxruntime as ort
    if not osp.isfile(onnx_path):
        raise DeployError(f"ONNX file '{onnx_path}' does not exist")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own exception types)
        text = ' '.join(str(exc).split())[:200]
        raise DeployError(f"'{onnx_path}' is not a loadable ONNX model ({text})") from None


def onnxruntime_session_runner(onnx_path, threads=None):
    """A callable that runs the exported model on a batch, for benchmarks.

    Args:
        onnx_path (str): An ONNX file written by ``tools/deployment/export_onnx.py``.
        threads (int, optional): Intra-op threads.

    Returns:
        callable: ``run(images)`` with ``images`` a ``(B, 3, H, W)`` float32 array (BGR, 0-255;
        B = 1 unless exported with ``--dynamic-batch``), returning the list of output arrays.
    """
    session = make_session(onnx_path, threads)
    name = session.get_inputs()[0].name

    def run(images):
        return session.run(None, {name: np.ascontiguousarray(images, dtype=np.float32)})

    return run


def read_metadata(session, onnx_path):
    """The exporter's ``metadata_props`` (prefix removed, values decoded)."""
    found = session.get_modelmeta().custom_metadata_map
    props = {key[len(METADATA_PREFIX):]: value for key, value in found.items()
             if key.startswith(METADATA_PREFIX)}
    missing = [key for key in _REQUIRED_KEYS if key not in props]
    if missing:
        raise DeployError(
            f"'{onnx_path}' was not written by tools/deployment/export_onnx.py (its metadata lacks "
            f"{METADATA_PREFIX}{missing[0]}); export the detector with that tool")
    meta = {key: json.loads(props[key]) for key in ('classes', 'input_shape', 'keep_ratio',
                                                    'pad_value')}
    meta.update(outputs=props['outputs'], score_thr=float(props['score_thr']),
                category_ids=json.loads(props.get('category_ids', 'null')))
    return meta


def read_image(path):
    """A colour image as ``(h, w, 3)`` uint8 BGR, as mmcv loads it."""
    import cv2
    image = cv2.imread(path, cv2.IMREAD_COLOR) if osp.isfile(path) else None
    if image is None:
        reason = 'it does not exist' if not osp.exists(path) else 'it is not a readable image'
        raise DeployError(f"cannot read image '{path}': {reason}")
    return image


class OnnxDetector:
    """An exported detector with the resize and box mapping of its config's test pipeline.

    Args:
        onnx_path (str): An ONNX file written by ``tools/deployment/export_onnx.py`` (detections,
            not ``--raw``).
        threads (int, optional): Intra-op threads.
    """

    def __init__(self, onnx_path, threads=None):
        self.session = make_session(onnx_path, threads)
        self.meta = read_metadata(self.session, onnx_path)
        if self.meta['outputs'] != OUTPUTS_DETECTIONS:
            raise DeployError(f"'{onnx_path}' was exported with --raw (head outputs only); export "
                              'it without --raw to get detections')
        self.input_name = self.session.get_inputs()[0].name
        self.classes = self.meta['classes']
        self.height, self.width = self.meta['input_shape']

    def preprocess(self, image):
        """Resize one BGR image to the network input.

        Returns:
            tuple: ``(input (3, H, W) float32, (x scale, y scale))``.
        """
        import cv2
        h, w = image.shape[:2]
        if not self.meta['keep_ratio']:
            resized = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            return resized.transpose(2, 0, 1).astype(np.float32), (self.width / w, self.height / h)
        scale = min(self.height / h, self.width / w)
        new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas = np.empty((self.height, self.width, 3), np.float32)
        canvas[:] = np.asarray(self.meta['pad_value'], np.float32)
        canvas[:new_h, :new_w] = resized
        return canvas.transpose(2, 0, 1), (new_w / w, new_h / h)

    def run(self, batch):
        """The graph's outputs for a ``(B, 3, H, W)`` batch: boxes, scores, labels, counts."""
        return self.session.run(None, {self.input_name: batch})

    def detect(self, image, score_thr=None):
        """Detections on one BGR image, in its own pixels.

        Args:
            image (np.ndarray): ``(h, w, 3)`` uint8 BGR.
            score_thr (float, optional): Keep detections scoring above this (default: the
                config's ``test_cfg.score_thr``, which the graph already applied).

        Returns:
            dict: ``boxes (n, 4)`` x1, y1, x2, y2; ``scores (n,)``; ``labels (n,)``.
        """
        inputs, (sx, sy) = self.preprocess(image)
        boxes, scores, labels, count = self.run(inputs[None])
        n = int(count[0])
        boxes = boxes[0, :n] / np.array([sx, sy, sx, sy], np.float32)
        h, w = image.shape[:2]
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        keep = scores[0, :n] > (self.meta['score_thr'] if score_thr is None else score_thr)
        return dict(boxes=boxes[keep], scores=scores[0, :n][keep], labels=labels[0, :n][keep])


def coco_results(image_id, detections, category_ids):
    """Detections as COCO result dicts (``bbox`` as x, y, w, h)."""
    results = []
    for box, score, label in zip(detections['boxes'], detections['scores'],
                                 detections['labels']):
        x1, y1, x2, y2 = (float(v) for v in box)
        results.append(dict(image_id=image_id, category_id=int(category_ids[int(label)]),
                            bbox=[x1, y1, x2 - x1, y2 - y1], score=float(score)))
    return results


def draw_detections(image, detections, classes):
    """A copy of ``image`` with the boxes and ``class score`` labels drawn."""
    import cv2
    canvas = image.copy()
    for box, score, label in zip(detections['boxes'], detections['scores'],
                                 detections['labels']):
        color = _color(int(label))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
        text = f'{classes[int(label)]} {float(score):.2f}'
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y1 - th - base, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw, top + th + base), color, -1)
        cv2.putText(canvas, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255),
                    1, cv2.LINE_AA)
    return canvas


def _color(label):
    palette = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
               (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0)]
    return palette[label % len(palette)]

