"""Non-maximum suppression as a PyTorch custom op that exports to ONNX ``NonMaxSuppression``.

The op returns a keep mask of fixed shape instead of a variable-length index list, so everything
around it traces with static shapes: the graph selects the kept boxes with a ``TopK`` afterwards.
"""
import onnx
import torch
from onnxscript import opset18 as op

# Candidates that must never be kept carry this score; real scores are probabilities (>= 0).
INVALID_SCORE = -1.0


@torch.library.custom_op('iresnet_mmdet::nms_keep_mask', mutates_args=())
def nms_keep_mask(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                  max_keep: int) -> torch.Tensor:
    """Single-class NMS per image, as a keep mask.

    Args:
        boxes (Tensor): ``(B, K, 4)`` boxes ``x1, y1, x2, y2``.
        scores (Tensor): ``(B, K)`` scores; candidates scoring below 0 are never kept.
        iou_threshold (float): A box overlapping a higher-scoring kept box by more than this is
            suppressed.
        max_keep (int): At most this many boxes are kept per image (the highest-scoring ones).

    Returns:
        Tensor: ``(B, K)`` bool, True for the kept boxes.
    """
    from mmcv.ops import nms
    keep = torch.zeros(scores.shape, dtype=torch.bool)
    for i in range(scores.shape[0]):
        candidates = torch.nonzero(scores[i] >= 0).view(-1)
        if candidates.numel() == 0:
            continue
        _, kept = nms(boxes[i, candidates], scores[i, candidates], iou_threshold)
        keep[i, candidates[kept[:max_keep]]] = True
    return keep


@nms_keep_mask.register_fake
def _(boxes, scores, iou_threshold, max_keep):
    return torch.empty(scores.shape, dtype=torch.bool, device=scores.device)


def nms_keep_mask_onnx(boxes, scores, iou_threshold: float, max_keep: int):
    """ONNX translation of :func:`nms_keep_mask` (onnxscript, opset 18)."""
    selected = op.NonMaxSuppression(
        boxes, op.Unsqueeze(scores, [1]), op.Constant(value_ints=[max_keep]),
        op.Constant(value_floats=[iou_threshold]), op.Constant(value_floats=[INVALID_SCORE / 2]))
    batch_and_box = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)  # (M, 2)
    ones = op.Expand(op.Constant(value_ints=[1]), op.Slice(op.Shape(selected), [0], [1]))
    zeros = op.Expand(op.Constant(value_ints=[0]), op.Shape(scores))
    return op.Cast(op.ScatterND(zeros, batch_and_box, ones), to=onnx.TensorProto.BOOL)


ONNX_TRANSLATIONS = {torch.ops.iresnet_mmdet.nms_keep_mask.default: nms_keep_mask_onnx}
