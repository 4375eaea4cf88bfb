"""``BatchedSSDHead``: the SSD head with training targets, losses and post-processing batched."""
import logging
import math
from typing import List, Optional

import torch
from mmdet.models.task_modules.assigners import MaxIoUAssigner
from mmdet.models.task_modules.assigners.iou2d_calculator import BboxOverlaps2D
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.models.task_modules.samplers import PseudoSampler
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor

from . import ssd_batch_ops as ops
from .fixed_ssd_head import FixedSSDHead


@MODELS.register_module()
class BatchedSSDHead(FixedSSDHead):
    """mmdet's ``SSDHead`` (as :class:`FixedSSDHead`) with its loss and predictions computed for
    the whole batch at once.

    mmdet assigns priors, mines hard negatives and post-processes image by image, with host
    synchronisations (``nonzero``, data-dependent shapes) on the way; on a GPU that costs several
    times the network's own step. This head gives the same losses, gradients and detections
    (``tests/test_batched_ssd_head.py`` checks them against mmdet's ``SSDHead``) from whole-batch
    tensor operations (:mod:`.ssd_batch_ops`):

    * training: the ground truth padded to the batch's largest count, one IoU tensor, the exact
      ``MaxIoUAssigner`` rule (thresholds, each box's best prior, the last box winning a shared
      prior, images without boxes), 3:1 hard-negative mining with one sort, SmoothL1 and
      cross-entropy divided by mmdet's ``avg_factor``; no host synchronisation;
    * prediction: softmax, the ``nms_pre`` best (prior, class) pairs per level and image, score
      threshold, decoding, one class-aware NMS call for the batch, ``max_per_img``.

    Constructor arguments, parameters and state-dict keys are ``SSDHead``'s, so checkpoints of
    either head load into the other. Two deliberate differences, both for bad input: a ground-truth
    box without positive width and height is left out (mmdet's regression target would be
    ``log 0``, an infinite loss), and a NaN or infinite head output makes the loss NaN (never a
    finite value that hides it). Settings outside the batched rule (another assigner, sampler or
    box coder, ``ignore_iof_thr > 0``, ``allowed_border >= 0``, ``reg_decoded_bbox``,
    ``nms_pre <= 0``, ...) fall back to mmdet's per-image code, with a log message.

    Args:
        *args: Positional arguments of :class:`mmdet.models.dense_heads.SSDHead`.
        **kwargs: Keyword arguments of :class:`mmdet.models.dense_heads.SSDHead`.
    """

    #: Its detections are those of mmdet's ``BaseDenseHead.predict_by_feat`` (tested), the
    #: post-processing the ONNX export re-expresses (``iresnet_mmdet.deploy``).
    standard_post_processing = True
    #: Most candidates per NMS call (:func:`.ssd_batch_ops.batched_nms_keep`).
    nms_chunk = 2048

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache = {}
        self._loss_settings = None
        reason = self._loss_unsupported()
        if reason is None and self.train_cfg:
            self._loss_settings = self._make_loss_settings()
        elif reason is not None:
            print_log(f'BatchedSSDHead: {reason}: training uses mmdet\'s per-image SSDHead loss',
                      logger='current', level=logging.WARNING)

    # ---- configuration ---------------------------------------------------------------------------

    def _loss_unsupported(self) -> Optional[str]:
        """Why the batched loss cannot reproduce this head's training settings (None: it can)."""
        if not self.train_cfg:
            return None
        assigner = self.assigner
        if type(assigner) is not MaxIoUAssigner:
            return f'assigner {type(assigner).__name__} is not MaxIoUAssigner'
        calculator = assigner.iou_calculator
        if (type(calculator) is not BboxOverlaps2D or calculator.scale != 1.
                or calculator.dtype is not None):
            return 'the assigner\'s IoU calculator is not a plain BboxOverlaps2D'
        if assigner.ignore_iof_thr > 0 or assigner.perm_repeat_gt_cfg is not None:
            return 'the assigner ignores boxes (ignore_iof_thr > 0) or permutes repeated boxes'
        if not assigner.pos_iou_thr > 0:
            return 'pos_iou_thr must be > 0'
        if type(self.sampler) is not PseudoSampler:
            return f'sampler {type(self.sampler).__name__} is not PseudoSampler'
        if self.train_cfg.get('allowed_border', -1) >= 0:
            return 'allowed_border >= 0 (priors outside the image are left out per image)'
        return self._coder_unsupported()

    def _coder_unsupported(self) -> Optional[str]:
        coder = self.bbox_coder
        if type(coder) is not DeltaXYWHBBoxCoder or coder.add_ctr_clamp or coder.use_box_type:
            return 'the box coder is not a plain DeltaXYWHBBoxCoder'
        if self.reg_decoded_bbox:
            return 'reg_decoded_bbox is set'
        if not isinstance(self.prior_generator, AnchorGenerator):
            return 'the prior generator is not an AnchorGenerator'
        return None

    def _make_loss_settings(self) -> ops.SSDLossSettings:
        assigner, cfg = self.assigner, self.train_cfg
        return ops.SSDLossSettings(
            num_classes=self.num_classes, pos_iou_thr=float(assigner.pos_iou_thr),
            neg_iou_thr=assigner.neg_iou_thr, min_pos_iou=float(assigner.min_pos_iou),
            match_low_quality=bool(assigner.match_low_quality),
            gt_max_assign_all=bool(assigner.gt_max_assign_all),
            neg_pos_ratio=int(cfg['neg_pos_ratio']), smoothl1_beta=float(cfg['smoothl1_beta']),
            pos_weight=float(cfg.get('pos_weight', -1)))

    def _predict_unsupported(self, cfg, score_factors, with_nms) -> Optional[str]:
        """Why the batched post-processing cannot reproduce mmdet's (None: it can)."""
        if score_factors is not None or not with_nms:
            return 'score factors or with_nms=False'
        if getattr(self.loss_cls, 'custom_cls_channels', False) or self.use_sigmoid_cls:
            return 'not a softmax classifier'
        nms = cfg.get('nms') or {}
        if nms.get('type', 'nms') != 'nms' or set(nms) - {'type', 'iou_threshold',
                                                          'class_agnostic'}:
            return f'test_cfg.nms {dict(nms)} is not a plain NMS'
        if cfg.get('nms_pre', -1) <= 0 or 'max_per_img' not in cfg:
            return 'test_cfg needs nms_pre > 0 and max_per_img'
        return self._coder_unsupported()

    # ---- cached constants ----------------------------------------------------------------------

    def _constant(self, name: str, values, device, dtype) -> Tensor:
        """A small constant tensor, made once per device and dtype (no copy per step)."""
        key = (name, str(device), dtype)
        if key not in self._cache:
            self._cache[key] = torch.tensor(values, dtype=dtype).to(device)
        return self._cache[key]

    def _priors(self, featmap_sizes, device, dtype) -> Tensor:
        """All levels' priors ``[P, 4]``, made once per feature-map sizes, device and dtype."""
        key = ('priors', tuple(tuple(s) for s in featmap_sizes), str(device), dtype)
        if key not in self._cache:
            levels = self.prior_generator.grid_priors(featmap_sizes, dtype=dtype, device=device)
            self._cache[key] = torch.cat([get_box_tensor(p) for p in levels])
        return self._cache[key]

    def _prior_valid(self, featmap_sizes, batch_img_metas, device) -> Optional[Tensor]:
        """``[B, P]`` valid flags of the priors (mmdet's ``valid_flags`` of each image's padded
        shape); None when every prior of every image is valid (always for SSD300)."""
        shapes = [tuple(meta['pad_shape'][:2]) for meta in batch_img_metas]
        if all(self._covers(featmap_sizes, shape) for shape in shapes):
            return None
        flags = {}
        for shape in set(shapes):
            key = ('valid', tuple(tuple(s) for s in featmap_sizes), shape, str(device))
            if key not in self._cache:
                levels = self.prior_generator.valid_flags(featmap_sizes, shape, device)
                self._cache[key] = torch.cat(levels)
            flags[shape] = self._cache[key]
        return torch.stack([flags[shape] for shape in shapes])

    def _covers(self, featmap_sizes, pad_shape) -> bool:
        """Whether a padded image of ``pad_shape`` makes every prior valid (the rule of
        ``AnchorGenerator.valid_flags``: the cells within ``ceil(size / stride)``)."""
        height, width = pad_shape
        return all(math.ceil(height / stride_h) >= feat_h and math.ceil(width / stride_w) >= feat_w
                   for (feat_h, feat_w), (stride_w, stride_h) in zip(
                       featmap_sizes, self.prior_generator.strides))

    def _flatten(self, cls_scores: List[Tensor], bbox_preds: List[Tensor]):
        """``[B, P, C + 1]`` logits and ``[B, P, 4]`` deltas in mmdet's prior order."""
        num_images = cls_scores[0].shape[0]
        logits = torch.cat([s.permute(0, 2, 3, 1).reshape(num_images, -1, self.cls_out_channels)
                            for s in cls_scores], 1)
        deltas = torch.cat([b.permute(0, 2, 3, 1).reshape(num_images, -1, 4)
                            for b in bbox_preds], 1)
        return logits, deltas

    # ---- training ------------------------------------------------------------------------------

    def loss_by_feat(self, cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
                     batch_gt_instances_ignore=None) -> dict:
        """Losses of the batch: ``loss_cls`` and ``loss_bbox``, each summed over the images
        (mmdet returns one per image; their sums, which mmengine's ``parse_losses`` forms, are
        equal)."""
        if self._loss_settings is None:
            return super().loss_by_feat(cls_scores, bbox_preds, batch_gt_instances,
                                        batch_img_metas, batch_gt_instances_ignore)
        featmap_sizes = [s.shape[-2:] for s in cls_scores]
        assert len(featmap_sizes) == self.prior_generator.num_levels
        device = cls_scores[0].device
        logits, deltas = self._flatten(cls_scores, bbox_preds)
        gt = ops.pad_ground_truth([get_box_tensor(g.bboxes) for g in batch_gt_instances],
                                  [g.labels for g in batch_gt_instances], device)
        loss_cls, loss_bbox = ops.ssd_loss(
            logits, deltas, self._priors(featmap_sizes, device, torch.float32), *gt,
            self._prior_valid(featmap_sizes, batch_img_metas, device),
            self._constant('means', self.bbox_coder.means, device, torch.float32),
            self._constant('stds', self.bbox_coder.stds, device, torch.float32),
            self._loss_settings)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)

    # ---- prediction ----------------------------------------------------------------------------

    def predict_by_feat(self, cls_scores, bbox_preds, score_factors=None, batch_img_metas=None,
                        cfg=None, rescale=False, with_nms=True) -> List[InstanceData]:
        """Detections of every image, as mmdet's ``BaseDenseHead.predict_by_feat`` gives them."""
        cfg = self.test_cfg if cfg is None else cfg
        if self._predict_unsupported(cfg, score_factors, with_nms) is not None:
            return super().predict_by_feat(cls_scores, bbox_preds, score_factors,
                                           batch_img_metas, cfg, rescale, with_nms)
        logits, deltas = self._flatten([s.detach() for s in cls_scores],
                                       [b.detach() for b in bbox_preds])
        featmap_sizes = [s.shape[-2:] for s in cls_scores]
        level_sizes = [s.shape[-2] * s.shape[-1] * n
                       for s, n in zip(cls_scores, self.num_base_priors)]
        scores, prior_index, labels = ops.select_candidates(
            logits.softmax(-1)[..., :-1], level_sizes, cfg['nms_pre'])
        boxes = self._decode_candidates(deltas, prior_index, featmap_sizes, batch_img_metas,
                                        rescale)
        valid = scores > cfg.get('score_thr', 0)
        if cfg.get('min_bbox_size', -1) >= 0:
            size = cfg['min_bbox_size']
            valid &= (boxes[..., 2] - boxes[..., 0] > size) & (boxes[..., 3] - boxes[..., 1] > size)
        return self._nms_per_image(boxes, scores, labels, valid, cfg)

    def _decode_candidates(self, deltas, prior_index, featmap_sizes, batch_img_metas, rescale):
        """``[B, K, 4]`` boxes of the candidates, clipped to the input and rescaled if asked."""
        device, dtype = deltas.device, deltas.dtype
        priors = self._priors(featmap_sizes, device, dtype)[prior_index]
        candidate_deltas = deltas.gather(1, prior_index[..., None].expand(-1, -1, 4))
        shapes = [tuple(meta['img_shape'][:2]) for meta in batch_img_metas]
        max_shape = shapes[0] if len(set(shapes)) == 1 else ops.host_to_device(
            shapes, dtype, device).view(-1, 1, 2)
        boxes = ops.decode(priors, candidate_deltas,
                           self._constant('means', self.bbox_coder.means, device, dtype),
                           self._constant('stds', self.bbox_coder.stds, device, dtype),
                           max_shape, clip_border=self.bbox_coder.clip_border)
        if rescale:
            factors = [[1 / s for s in meta['scale_factor']] * 2 for meta in batch_img_metas]
            boxes = boxes * ops.host_to_device(factors, dtype, device).view(-1, 1, 4)
        return boxes

    def _nms_per_image(self, boxes, scores, labels, valid, cfg) -> List[InstanceData]:
        """Class-aware NMS of every image's valid candidates in one call (or a few, see
        :func:`.ssd_batch_ops.batched_nms_keep`); per image results."""
        num_images, num_candidates = scores.shape
        counts = valid.sum(dim=1).tolist()
        flat = valid.flatten().nonzero().squeeze(1)
        image_ids = flat // num_candidates
        boxes, scores = boxes.view(-1, 4)[flat], scores.flatten()[flat]
        labels = labels.flatten()[flat]
        if cfg['nms'].get('class_agnostic', False):
            classes, nms_labels = 1, torch.zeros_like(labels)
        else:
            classes, nms_labels = self.num_classes, labels
        keep = ops.batched_nms_keep(boxes, scores, image_ids, nms_labels, counts, classes,
                                    cfg['nms']['iou_threshold'], self.nms_chunk)
        keep, counts = ops.first_per_image(image_ids, keep, num_images, cfg['max_per_img'])
        return [InstanceData(bboxes=b, scores=s, labels=lab) for b, s, lab in zip(
            boxes[keep].split(counts), scores[keep].split(counts), labels[keep].split(counts))]
