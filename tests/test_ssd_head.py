"""FixedSSDHead: mmdet 3.3.0's SSDHead crashes at prediction; the subclass must not."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

import iresnet_mmdet  # noqa: F401  (registers FixedSSDHead)
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS

IN_CHANNELS = (16, 8, 8, 8, 8, 8)


def head_cfg(head_type):
    """A small SSD300 head (few channels, full 8732-prior anchor layout)."""
    return ConfigDict(
        type=head_type,
        in_channels=IN_CHANNELS,
        num_classes=3,
        stacked_convs=0,
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            input_size=300,
            basesize_ratio_range=(0.15, 0.9),
            strides=[8, 16, 32, 64, 100, 300],
            ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0.] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
        train_cfg=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0., ignore_iof_thr=-1, gt_max_assign_all=False),
            sampler=dict(type='PseudoSampler'), smoothl1_beta=1., allowed_border=-1,
            pos_weight=-1, neg_pos_ratio=3, debug=False),
        test_cfg=dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
                      score_thr=0.02, max_per_img=200))


def features():
    torch.manual_seed(0)
    sizes = (38, 19, 10, 5, 3, 1)
    return tuple(torch.rand(1, c, s, s) for c, s in zip(IN_CHANNELS, sizes))


IMG_META = [dict(img_shape=(300, 300), pad_shape=(300, 300), ori_shape=(300, 300),
                 scale_factor=(1., 1.))]


def test_mmdet_ssdhead_still_crashes_at_prediction():
    """Documents the upstream bug the subclass exists for (if this fails, mmdet fixed it)."""
    head = MODELS.build(head_cfg('SSDHead')).eval()
    cls_scores, bbox_preds = head(features())
    with pytest.raises(AttributeError, match='loss_cls'):
        head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=IMG_META, rescale=False)


def test_fixed_head_predicts():
    head = MODELS.build(head_cfg('FixedSSDHead')).eval()
    assert isinstance(head, SSDHead)
    cls_scores, bbox_preds = head(features())
    results = head.predict_by_feat(
        cls_scores, bbox_preds, batch_img_metas=IMG_META, rescale=False)
    assert len(results) == 1
    det = results[0]
    assert det.bboxes.shape[1] == 4 and len(det) == len(det.scores) == len(det.labels)
    assert len(det) > 0  # random features at score_thr 0.02 leave detections
    assert det.labels.max() < 3  # softmax path, background column dropped
    assert (det.scores >= 0.02).all() and (det.scores <= 1).all()


def test_fixed_head_is_ssdhead_otherwise():
    """Same parameters, priors and loss as mmdet's SSDHead: only the missing attribute differs."""
    ref, fixed = MODELS.build(head_cfg('SSDHead')), MODELS.build(head_cfg('FixedSSDHead'))
    fixed.load_state_dict(ref.state_dict())  # strict: identical keys and shapes
    assert fixed.loss_cls is None
    feats = features()
    priors = fixed.prior_generator.grid_priors([f.shape[-2:] for f in feats], device='cpu')
    assert sum(p.shape[0] for p in priors) == 8732
    gt = InstanceData(bboxes=torch.tensor([[20., 30., 120., 200.], [150., 150., 290., 280.]]),
                      labels=torch.tensor([0, 2]))
    loss_ref = ref.loss_by_feat(*ref(feats), [gt], IMG_META)
    loss_fixed = fixed.loss_by_feat(*fixed(feats), [gt], IMG_META)
    for key in ('loss_cls', 'loss_bbox'):
        assert torch.allclose(sum(loss_ref[key]), sum(loss_fixed[key]))
