"""ONNX export of single-stage detectors with their post-processing, and onnxruntime inference.

* :mod:`.export`: build the detector from a config and checkpoint, export it (``export_onnx``);
* :mod:`.graph`: the exported computation (pre-processing, detector, decoding, NMS);
* :mod:`.nms`: NMS as a custom op that becomes ONNX ``NonMaxSuppression``;
* :mod:`.verify`: onnxruntime against mmdet's PyTorch model (raw outputs, detections, bbox AP);
* :mod:`.runtime`: onnxruntime-only inference (no torch, no mmdet), e.g.
  :func:`onnxruntime_session_runner` for benchmarks.
"""
from .runtime import OnnxDetector, onnxruntime_session_runner

__all__ = ['OnnxDetector', 'onnxruntime_session_runner']
