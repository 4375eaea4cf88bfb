"""The exported computation: pre-processing, detector and mmdet's dense-head post-processing.

:class:`DetectorGraph` re-expresses mmdet 3.3's ``BaseDenseHead.predict_by_feat`` (as used by
``SSDHead`` and ``RetinaHead``) with static shapes so that it exports to ONNX:

* per level, the ``(prior, class)`` pairs scoring above ``score_thr``, at most ``nms_pre`` of them
  (``filter_scores_and_topk``): a ``TopK`` over all pairs, the pairs below the threshold marked
  invalid instead of removed;
* the boxes decoded by the head's own ``bbox_coder`` and clipped to the network input;
* boxes of width or height not above ``min_bbox_size`` dropped;
* per-class NMS as mmcv's ``batched_nms`` does it: each class's boxes shifted by
  ``label * (max coordinate + 1)``, then one single-class NMS (ONNX ``NonMaxSuppression``);
* the ``max_per_img`` highest-scoring kept detections.

Boxes are in network-input pixels (the ``H x W`` the graph takes); mapping them to the original
image is the caller's job, because only the caller knows how the image was resized.
"""
import torch
from torch import nn

from .nms import INVALID_SCORE, nms_keep_mask


class Preprocess(nn.Module):
    """mmdet's ``DetDataPreprocessor`` for an already resized batch: channel flip, mean/std.

    Args:
        mean (Sequence[float]): Per-channel mean, in the order after the flip.
        std (Sequence[float]): Per-channel standard deviation.
        bgr_to_rgb (bool): Reverse the channel order first.
        pad_size_divisor (int): The preprocessor pads batches to a multiple of this (not done
            here: the graph's input has its final size).
    """

    def __init__(self, mean, std, bgr_to_rgb, pad_size_divisor=1):
        super().__init__()
        self.bgr_to_rgb = bgr_to_rgb
        self.pad_size_divisor = pad_size_divisor
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def of(cls, detector):
        """The settings of ``detector.data_preprocessor``: the one place that reads them.

        Args:
            detector (mmdet.models.BaseDetector): The detector.

        Returns:
            Preprocess: mean and std (0 and 1 without normalisation), the channel flip and the
            pad divisor of the detector's ``DetDataPreprocessor``.
        """
        preprocessor = detector.data_preprocessor
        channels = len(preprocessor.mean.view(-1))
        normalize = preprocessor._enable_normalize
        mean = preprocessor.mean.view(-1).tolist() if normalize else [0] * channels
        std = preprocessor.std.view(-1).tolist() if normalize else [1] * channels
        divisor = int(getattr(preprocessor, 'pad_size_divisor', 1) or 1)
        return cls(mean, std, bool(preprocessor._channel_conversion), divisor)

    def forward(self, images):
        if self.bgr_to_rgb:
            images = images.flip(1)
        return (images - self.mean) / self.std

    def invert(self, inputs):
        """The graph input (BGR, 0-255) that :meth:`forward` turns into ``inputs``."""
        images = inputs.cpu() * self.std + self.mean
        return images.flip(1) if self.bgr_to_rgb else images


class RawDetectorGraph(nn.Module):
    """Pre-processing, backbone, neck and head: the head's outputs per level.

    Args:
        detector (mmdet.models.SingleStageDetector): The detector, in eval mode.
        preprocess (Preprocess): The pixel normalisation.
    """

    def __init__(self, detector, preprocess):
        super().__init__()
        self.detector = detector
        self.preprocess = preprocess

    def forward(self, images):
        """Returns ``cls_score_0, ..., bbox_pred_0, ...`` as mmdet's head returns them."""
        cls_scores, bbox_preds = self.head_outputs(images)
        return tuple(cls_scores) + tuple(bbox_preds)

    def head_outputs(self, images):
        features = self.detector.extract_feat(self.preprocess(images))
        cls_scores, bbox_preds = self.detector.bbox_head(features)[:2]
        return cls_scores, bbox_preds


class DetectorGraph(RawDetectorGraph):
    """:class:`RawDetectorGraph` plus decoding and NMS: the final detections.

    Args:
        detector (mmdet.models.SingleStageDetector): The detector, in eval mode.
        preprocess (Preprocess): The pixel normalisation.
        input_shape (tuple[int, int]): Network input ``(H, W)``; fixes the priors.
    """

    def __init__(self, detector, preprocess, input_shape):
        super().__init__(detector, preprocess)
        head = detector.bbox_head
        cfg = head.test_cfg
        self.input_shape = tuple(input_shape)
        self.num_classes = head.num_classes
        self.score_thr = float(cfg.get('score_thr', 0))
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.iou_threshold = float(cfg['nms']['iou_threshold'])
        self.max_per_img = int(cfg['max_per_img'])
        priors = head.prior_generator.grid_priors(
            self._featmap_sizes(), dtype=torch.float32, device='cpu')
        for level, level_priors in enumerate(priors):
            self.register_buffer(f'priors_{level}', level_priors, persistent=False)
        self.num_levels = len(priors)

    def _featmap_sizes(self):
        with torch.no_grad():
            probe = torch.zeros(1, 3, *self.input_shape)
            cls_scores, _ = self.head_outputs(probe)
        return [tuple(score.shape[-2:]) for score in cls_scores]

    def forward(self, images):
        """Detections of a batch.

        Args:
            images (Tensor): ``(B, 3, H, W)`` float, the config's channel order, 0-255.

        Returns:
            tuple[Tensor]: ``boxes (B, max_per_img, 4)`` (x1, y1, x2, y2 in input pixels),
            ``scores (B, max_per_img)`` (descending), ``labels (B, max_per_img)`` (int64) and
            ``num_detections (B,)`` (int64); the entries past ``num_detections`` are padding:
            score 0, label -1, box 0.
        """
        cls_scores, bbox_preds = self.head_outputs(images)
        candidates = [self._level_candidates(cls_scores[level], bbox_preds[level],
                                             getattr(self, f'priors_{level}'))
                      for level in range(self.num_levels)]
        scores, boxes, labels = (torch.cat(parts, dim=1) for parts in zip(*candidates))
        valid = scores > INVALID_SCORE / 2
        if self.min_bbox_size >= 0:
            width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
            valid = valid & (width > self.min_bbox_size) & (height > self.min_bbox_size)
        scores = torch.where(valid, scores, torch.full_like(scores, INVALID_SCORE))
        keep = nms_keep_mask(self._class_offset_boxes(boxes, labels, valid), scores,
                             self.iou_threshold, self.max_per_img)
        return self._select(keep, scores, boxes, labels)

    def _level_candidates(self, cls_score, bbox_pred, priors):
        """One level's ``filter_scores_and_topk``: scores, decoded boxes, labels ``(B, k)``."""
        batch = cls_score.shape[0]
        head = self.detector.bbox_head
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(batch, -1, head.cls_out_channels)
        if head.use_sigmoid_cls:
            scores = cls_score.sigmoid()
        else:
            scores = cls_score.softmax(-1)[..., :-1]  # the last channel is the background
        deltas = bbox_pred.permute(0, 2, 3, 1).reshape(batch, -1, head.bbox_coder.encode_size)
        boxes = head.bbox_coder.decode(
            priors.repeat(batch, 1), deltas.reshape(-1, deltas.shape[-1]),
            max_shape=self.input_shape).reshape(batch, -1, 4)
        scores = scores.reshape(batch, -1)  # (prior, class) pairs, class fastest
        scores = torch.where(scores > self.score_thr, scores, torch.full_like(scores,
                                                                             INVALID_SCORE))
        num_pairs = scores.shape[1]
        k = num_pairs if self.nms_pre < 0 else min(self.nms_pre, num_pairs)
        scores, pair = scores.topk(k, dim=1)
        prior = torch.div(pair, self.num_classes, rounding_mode='floor')
        boxes = boxes.gather(1, prior.unsqueeze(-1).expand(-1, -1, 4))
        return scores, boxes, pair % self.num_classes

    @staticmethod
    def _class_offset_boxes(boxes, labels, valid):
        """mmcv ``batched_nms``'s trick: boxes of different classes never overlap."""
        valid_boxes = torch.where(valid.unsqueeze(-1), boxes, torch.zeros_like(boxes))
        max_coordinate = valid_boxes.flatten(1).amax(dim=1)
        offsets = labels.to(boxes.dtype) * (max_coordinate.unsqueeze(1) + 1)
        return boxes + offsets.unsqueeze(-1)

    def _select(self, keep, scores, boxes, labels):
        kept_scores = torch.where(keep, scores, torch.full_like(scores, INVALID_SCORE))
        k = min(self.max_per_img, scores.shape[1])
        top_scores, index = kept_scores.topk(k, dim=1)
        found = top_scores > INVALID_SCORE / 2
        top_boxes = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        top_boxes = torch.where(found.unsqueeze(-1), top_boxes, torch.zeros_like(top_boxes))
        top_scores = torch.where(found, top_scores, torch.zeros_like(top_scores))
        top_labels = torch.where(found, labels.gather(1, index), torch.full_like(index, -1))
        return top_boxes, top_scores, top_labels, found.sum(dim=1)
