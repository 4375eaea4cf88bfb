"""SSD training targets, losses and post-processing for a whole batch at once.

Tensor functions behind :class:`~iresnet_mmdet.models.dense_heads.BatchedSSDHead`. Each one
re-expresses, for a batch, what mmdet 3.3 does per image (``MaxIoUAssigner``, ``PseudoSampler``,
``SSDHead.loss_by_feat``, ``DeltaXYWHBBoxCoder``, ``BaseDenseHead.predict_by_feat``), with the
same arithmetic in the same order, so that the results are mmdet's:

* the ground truth is padded to the batch's largest count (:func:`pad_ground_truth`), with a
  validity mask; one IoU tensor ``[B, G, P]`` holds every image's overlaps;
* :func:`ssd_loss` has no host synchronisation and no data-dependent shape, so that a GPU runs it
  as one queue of kernels and ``torch.compile(fullgraph=True)`` can trace it;
* :func:`select_candidates` and :func:`batched_nms_keep` are the post-processing: one top-k per
  level for the batch and one class-aware NMS call for the batch (or a few, for many candidates).
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``torch.finfo(torch.float32).eps``: mmdet's ``weight_reduce_loss`` adds it to ``avg_factor``.
FLOAT32_EPS = torch.finfo(torch.float32).eps
#: mmdet's ``bbox_overlaps`` lower bound of the union.
IOU_EPS = 1e-6


@dataclass(frozen=True)
class SSDLossSettings:
    """The training settings the batched loss uses (from ``train_cfg`` and the head).

    Args:
        num_classes (int): Foreground classes; label ``num_classes`` is the background.
        pos_iou_thr (float): ``MaxIoUAssigner.pos_iou_thr``.
        neg_iou_thr (float | tuple): ``MaxIoUAssigner.neg_iou_thr``.
        min_pos_iou (float): ``MaxIoUAssigner.min_pos_iou``.
        match_low_quality (bool): ``MaxIoUAssigner.match_low_quality``.
        gt_max_assign_all (bool): ``MaxIoUAssigner.gt_max_assign_all``.
        neg_pos_ratio (int): Hard negatives per positive (``train_cfg.neg_pos_ratio``).
        smoothl1_beta (float): ``train_cfg.smoothl1_beta``.
        pos_weight (float): ``train_cfg.pos_weight`` (<= 0: weight 1).
    """

    num_classes: int
    pos_iou_thr: float
    neg_iou_thr: object
    min_pos_iou: float
    match_low_quality: bool
    gt_max_assign_all: bool
    neg_pos_ratio: int
    smoothl1_beta: float
    pos_weight: float


def host_to_device(values: Sequence, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A tensor of host values on ``device`` without waiting for the device.

    A plain ``torch.tensor(values, device='cuda')`` copies from pageable memory and synchronises
    the stream; a pinned buffer copied with ``non_blocking=True`` does not.
    """
    tensor = torch.tensor(values, dtype=dtype)
    if torch.device(device).type != 'cuda':
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def pad_ground_truth(boxes: List[Tensor], labels: List[Tensor],
                     device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    """The images' boxes and labels padded to the batch's largest count.

    Args:
        boxes (list[Tensor]): Per image ``[n_i, 4]`` boxes (x1, y1, x2, y2).
        labels (list[Tensor]): Per image ``[n_i]`` labels.
        device (torch.device): Device of the result.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``[B, G, 4]`` float32 boxes, ``[B, G]`` long labels and
        ``[B, G]`` bool ``filled`` (False for padding), ``G = max(1, max n_i)``.
    """
    counts = [len(b) for b in boxes]
    num_images, slots = len(boxes), max(1, max(counts))
    # destination row of every box in the flattened [B * G] padding, built on the host
    dest = [image * slots + j for image, n in enumerate(counts) for j in range(n)]
    dest = host_to_device(dest, torch.long, device)
    padded = torch.zeros(num_images * slots, 4, device=device)
    padded.index_copy_(0, dest, torch.cat(boxes).to(device, torch.float32))
    padded_labels = torch.zeros(num_images * slots, dtype=torch.long, device=device)
    padded_labels.index_copy_(0, dest, torch.cat(labels).to(device, torch.long))
    filled = torch.zeros(num_images * slots, dtype=torch.bool, device=device)
    filled.index_fill_(0, dest, True)
    return (padded.view(num_images, slots, 4), padded_labels.view(num_images, slots),
            filled.view(num_images, slots))


def box_iou(gt_boxes: Tensor, priors: Tensor) -> Tensor:
    """IoU ``[B, G, P]`` of ``[B, G, 4]`` boxes with ``[P, 4]`` priors.

    mmdet's ``bbox_overlaps(mode='iou')`` operation by operation (the same float32 results), so
    that the assignment thresholds and arg-maxes decide as mmdet's do.
    """
    area_gt = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
    area_prior = (priors[:, 2] - priors[:, 0]) * (priors[:, 3] - priors[:, 1])
    lt = torch.max(gt_boxes[..., :, None, :2], priors[None, None, :, :2])
    rb = torch.min(gt_boxes[..., :, None, 2:], priors[None, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area_gt[..., None] + area_prior - overlap
    return overlap / union.clamp(min=IOU_EPS)


def assign(ious: Tensor, gt_valid: Tensor, prior_valid: Optional[Tensor],
           settings: SSDLossSettings) -> Tensor:
    """``MaxIoUAssigner.assign_wrt_overlaps`` for a batch: mmdet's ``gt_inds`` ``[B, P]``.

    -1: ignored, 0: negative, ``k + 1``: positive for ground-truth slot ``k``.

    Args:
        ious (Tensor): ``[B, G, P]`` from :func:`box_iou`.
        gt_valid (Tensor): ``[B, G]``, False for padding.
        prior_valid (Tensor, optional): ``[B, P]``, False for priors mmdet leaves out of the
            assignment (outside the padded image); None: all valid.
        settings (SSDLossSettings): The assigner's thresholds.
    """
    ious = torch.where(gt_valid[..., None], ious, 0.)  # padding never wins; IoUs are >= 0
    if prior_valid is not None:
        ious = torch.where(prior_valid[:, None, :], ious, -1.)  # neither positive nor negative
    max_overlaps, argmax_overlaps = ious.max(dim=1)
    gt_max_overlaps, gt_argmax_overlaps = ious.max(dim=2)
    if isinstance(settings.neg_iou_thr, (tuple, list)):
        low, high = settings.neg_iou_thr
        negative = (max_overlaps >= low) & (max_overlaps < high)
        no_gt = ~gt_valid.any(dim=1, keepdim=True)  # mmdet: an image without boxes is negative
        negative = negative | (no_gt & (max_overlaps >= 0))
    else:
        negative = (max_overlaps >= 0) & (max_overlaps < settings.neg_iou_thr)
    gt_inds = torch.where(negative, 0, -1)
    gt_inds = torch.where(max_overlaps >= settings.pos_iou_thr, argmax_overlaps + 1, gt_inds)
    if settings.match_low_quality:
        forced = best_prior_matches(ious, gt_valid, gt_max_overlaps, gt_argmax_overlaps, settings)
        gt_inds = torch.where(forced > 0, forced, gt_inds)
    return gt_inds


def best_prior_matches(ious: Tensor, gt_valid: Tensor, gt_max_overlaps: Tensor,
                       gt_argmax_overlaps: Tensor, settings: SSDLossSettings) -> Tensor:
    """The low-quality matches ``[B, P]`` (``k + 1``, or 0 for none) of ``MaxIoUAssigner``.

    mmdet loops over the ground-truth boxes in index order and assigns each box's best prior
    (all equally best priors with ``gt_max_assign_all``) to that box, so where several boxes
    share a prior the one with the largest index wins: here the maximum of ``k + 1`` over them.
    """
    num_slots = ious.shape[1]
    index = torch.arange(1, num_slots + 1, device=ious.device)
    eligible = gt_valid & (gt_max_overlaps >= settings.min_pos_iou)
    if settings.gt_max_assign_all:
        best = (ious == gt_max_overlaps[..., None]) & eligible[..., None]
        return (best * index[:, None]).amax(dim=1)
    source = torch.where(eligible, index, 0)
    forced = torch.zeros(ious.shape[0], ious.shape[2], dtype=torch.long, device=ious.device)
    return forced.scatter_reduce(1, gt_argmax_overlaps, source, reduce='amax')


def encode(priors: Tensor, gt_boxes: Tensor, means: Tensor, stds: Tensor) -> Tensor:
    """mmdet's ``bbox2delta`` (``DeltaXYWHBBoxCoder.encode``) on ``[..., 4]`` boxes."""
    px = (priors[..., 0] + priors[..., 2]) * 0.5
    py = (priors[..., 1] + priors[..., 3]) * 0.5
    pw = priors[..., 2] - priors[..., 0]
    ph = priors[..., 3] - priors[..., 1]
    gx = (gt_boxes[..., 0] + gt_boxes[..., 2]) * 0.5
    gy = (gt_boxes[..., 1] + gt_boxes[..., 3]) * 0.5
    gw = gt_boxes[..., 2] - gt_boxes[..., 0]
    gh = gt_boxes[..., 3] - gt_boxes[..., 1]
    deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw),
                          torch.log(gh / ph)], dim=-1)
    return (deltas - means) / stds


def smooth_l1(pred: Tensor, target: Tensor, beta: float) -> Tensor:
    """mmdet's element-wise ``smooth_l1_loss``."""
    diff = torch.abs(pred - target)
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def ssd_loss(cls_scores: Tensor, bbox_preds: Tensor, priors: Tensor, gt_boxes: Tensor,
             gt_labels: Tensor, gt_filled: Tensor, prior_valid: Optional[Tensor], means: Tensor,
             stds: Tensor, settings: SSDLossSettings) -> Tuple[Tensor, Tensor]:
    """``SSDHead.loss_by_feat`` for a batch: ``(loss_cls, loss_bbox)``, each summed over images.

    Cross-entropy of the positives plus the ``neg_pos_ratio * num_pos`` hardest negatives of
    each image, and SmoothL1 of the positives' encoded boxes, both divided by mmdet's
    ``avg_factor`` (the sum over images of ``max(num_pos, 1)``).

    Args:
        cls_scores (Tensor): ``[B, P, num_classes + 1]`` logits.
        bbox_preds (Tensor): ``[B, P, 4]`` box deltas.
        priors (Tensor): ``[P, 4]`` float32 priors.
        gt_boxes, gt_labels, gt_filled (Tensor): :func:`pad_ground_truth`'s outputs. Boxes
            without positive width and height (degenerate, or NaN) take no part.
        prior_valid (Tensor, optional): See :func:`assign`.
        means, stds (Tensor): ``[4]`` float32 box coder constants.
        settings (SSDLossSettings): Assigner and loss settings.
    """
    gt_valid = gt_filled & (gt_boxes[..., 2] > gt_boxes[..., 0]) & (
        gt_boxes[..., 3] > gt_boxes[..., 1])
    gt_inds = assign(box_iou(gt_boxes, priors), gt_valid, prior_valid, settings)
    positive = gt_inds > 0
    matched = (gt_inds - 1).clamp(min=0)
    labels = torch.where(positive, gt_labels.gather(1, matched), settings.num_classes)
    pos_weight = 1. if settings.pos_weight <= 0 else float(settings.pos_weight)
    label_weights = torch.where(positive, pos_weight, (gt_inds == 0).float())
    num_images, num_priors, num_channels = cls_scores.shape
    cross_entropy = F.cross_entropy(
        cls_scores.reshape(-1, num_channels), labels.reshape(-1),
        reduction='none').view(num_images, num_priors) * label_weights
    num_pos = positive.sum(dim=1)
    avg_factor = num_pos.clamp(min=1).sum()
    loss_cls = (cross_entropy * positive).sum() + hard_negative_sum(
        cross_entropy, positive, num_pos, settings.neg_pos_ratio)
    matched_boxes = gt_boxes.gather(1, matched[..., None].expand(-1, -1, 4))
    targets = encode(priors.expand_as(matched_boxes), matched_boxes, means, stds)
    targets = torch.where(positive[..., None], targets, 0.)  # the others may be inf/NaN
    loss_bbox = (smooth_l1(bbox_preds, targets, settings.smoothl1_beta) *
                 positive[..., None]).sum()
    return loss_cls / avg_factor, loss_bbox / (avg_factor + FLOAT32_EPS)


def hard_negative_sum(cross_entropy: Tensor, positive: Tensor, num_pos: Tensor,
                      neg_pos_ratio: int) -> Tensor:
    """Sum over images of the ``min(ratio * num_pos, num_negatives)`` largest negative losses.

    One sort for the batch: the non-positives' losses in descending order, of which each image
    keeps its first ``k``. mmdet's ``topk`` may pick another of several equal losses, but the
    sum is the same.
    """
    num_candidates = (~positive).sum(dim=1)
    keep = torch.minimum(num_pos * neg_pos_ratio, num_candidates)
    candidates = torch.where(positive, -1., cross_entropy)  # below every loss (losses are >= 0)
    ordered = candidates.sort(dim=1, descending=True).values
    rank = torch.arange(ordered.shape[1], device=ordered.device)
    return (ordered * (rank < keep[:, None])).sum()


def decode(priors: Tensor, deltas: Tensor, means: Tensor, stds: Tensor, max_shape,
           wh_ratio_clip: float = 16 / 1000, clip_border: bool = True) -> Tensor:
    """mmdet's ``delta2bbox`` on ``[B, K, 4]`` priors and deltas.

    Args:
        max_shape (tuple | Tensor | None): ``(H, W)`` shared by every image, or ``[B, 1, 2]``
            per image (H, W), or None (no clipping).
    """
    denorm = deltas * stds + means
    pxy = (priors[..., :2] + priors[..., 2:]) * 0.5
    pwh = priors[..., 2:] - priors[..., :2]
    dxy_wh = pwh * denorm[..., :2]
    max_ratio = abs(math.log(wh_ratio_clip))
    dwh = denorm[..., 2:].clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - (gwh * 0.5), gxy + (gwh * 0.5)], dim=-1)
    if not clip_border or max_shape is None:
        return boxes
    if isinstance(max_shape, Tensor):  # [B, 1, 2] (H, W) -> (W, H, W, H)
        return torch.minimum(boxes.clamp(min=0), max_shape.flip(-1).repeat(1, 1, 2))
    height, width = max_shape[:2]
    boxes[..., 0::2] = boxes[..., 0::2].clamp(min=0, max=width)
    boxes[..., 1::2] = boxes[..., 1::2].clamp(min=0, max=height)
    return boxes


def select_candidates(scores: Tensor, level_sizes: Sequence[int], nms_pre: int):
    """mmdet's ``filter_scores_and_topk`` per level, for the batch: the ``nms_pre`` highest
    (prior, class) scores of every level and image.

    Args:
        scores (Tensor): ``[B, P, C]`` foreground probabilities.
        level_sizes (Sequence[int]): Priors per level (summing to P).
        nms_pre (int): Candidates per level and image.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``[B, K]`` scores, prior indices (into P) and labels;
        the caller drops those not above the score threshold.
    """
    num_classes = scores.shape[2]
    values, priors, labels = [], [], []
    for level_scores, start in zip(scores.split(list(level_sizes), dim=1),
                                   _starts(level_sizes)):
        flat = level_scores.reshape(scores.shape[0], -1)
        top, index = flat.topk(min(nms_pre, flat.shape[1]), dim=1)
        values.append(top)
        priors.append(index // num_classes + start)
        labels.append(index % num_classes)
    return torch.cat(values, 1), torch.cat(priors, 1), torch.cat(labels, 1)


def _starts(sizes: Sequence[int]) -> List[int]:
    return [sum(sizes[:i]) for i in range(len(sizes))]


def nms_offsets(groups: Tensor, num_groups: int, boxes: Tensor) -> Tensor:
    """``[N, 4]`` offsets that keep boxes of different groups apart for one NMS call.

    mmcv's ``batched_nms`` shifts group ``g`` by ``g * (max + 1)`` along the diagonal; for a
    batch of ``B * C`` groups the shifts grow large enough that float32 rounding of the shifted
    coordinates reaches a tenth of a pixel. The groups are laid out on a square grid instead, so
    the largest shift is ``sqrt(B * C)`` spans, no more than mmdet's per-image shift.
    """
    side = max(1, math.ceil(math.sqrt(num_groups)))
    span = boxes.max() + 1
    column, row = (groups % side).to(boxes.dtype), (groups // side).to(boxes.dtype)
    return torch.stack([column, row, column, row], dim=1) * span


def nms_chunks(counts: Sequence[int], max_boxes: int) -> List[Tuple[int, int, int]]:
    """Consecutive images packed into NMS calls of at most ``max_boxes`` candidates (an image
    with more gets a call of its own).

    Returns:
        list[tuple[int, int, int]]: ``(first image, number of images, number of boxes)``.
    """
    chunks, first, boxes = [], 0, 0
    for image, count in enumerate(counts):
        if boxes and boxes + count > max_boxes:
            chunks.append((first, image - first, boxes))
            first, boxes = image, 0
        boxes += count
    if boxes:
        chunks.append((first, len(counts) - first, boxes))
    return chunks


def batched_nms_keep(boxes: Tensor, scores: Tensor, image_ids: Tensor, labels: Tensor,
                     counts: Sequence[int], num_classes: int, iou_threshold: float,
                     max_boxes: int) -> Tensor:
    """Class-aware NMS of every image's candidates with few ``mmcv.ops.nms`` calls.

    The candidates (``[N]``, ordered by image, ``counts`` per image) of consecutive images go to
    one call with their boxes shifted apart by image and class (:func:`nms_offsets`); one call for
    the batch unless it has more than ``max_boxes`` candidates. (An NMS kernel compares every
    pair of its boxes: one call for ``B`` images of ``n`` candidates costs ``B`` times the work of
    ``B`` calls, which matters once ``B * n`` is in the thousands.)

    Args:
        num_classes (int): Classes per image (1: class-agnostic NMS).

    Returns:
        Tensor: Indices of the kept candidates, each image's in descending score order.
    """
    from mmcv.ops import nms
    keeps, start = [], 0
    for first, num_images, num_boxes in nms_chunks(counts, max_boxes):
        part = slice(start, start + num_boxes)
        groups = (image_ids[part] - first) * num_classes + labels[part]
        part_boxes = boxes[part].float()  # float16 (AMP) cannot hold shifted coordinates
        shifted = part_boxes + nms_offsets(groups, num_images * num_classes, part_boxes)
        keeps.append(nms(shifted, scores[part].float(), iou_threshold)[1] + start)
        start += num_boxes
    return torch.cat(keeps) if keeps else image_ids.new_zeros(0)


def first_per_image(image_ids: Tensor, keep: Tensor, num_images: int, max_per_img: int):
    """The first ``max_per_img`` of each image's kept candidates.

    Args:
        image_ids (Tensor): ``[N]`` image of every candidate.
        keep (Tensor): Kept candidates, each image's in descending score order (the images'
            interleaved).

    Returns:
        tuple[Tensor, list[int]]: The kept indices image by image, each image's in descending
        score order, and the number of each image.
    """
    images, order = image_ids[keep].sort(stable=True)
    keep = keep[order]
    counts = torch.bincount(images, minlength=num_images)
    first = counts.cumsum(0) - counts
    rank = torch.arange(len(keep), device=keep.device) - first[images]
    return keep[rank < max_per_img], counts.clamp(max=max_per_img).tolist()
