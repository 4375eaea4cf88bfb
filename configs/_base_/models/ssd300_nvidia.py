# SSD300 with the NVIDIA DeepLearningExamples "SSD300 v1.1" topology and a residual backbone cut
# after stage 3 (docs/ssd300.md).
#
# From the paper (pinned down by reproducing all 8 parameter counts and GFLOPs of its SSD300 table,
# `python tools/analysis/complexity.py --table`):
#   * backbone cut after stage 3, stage 3 stride 1 -> one 38x38 map (C4 channels) for 300x300 input;
#   * five extra layers conv1x1(no bias)-BN-ReLU-conv3x3(no bias)-BN-ReLU, widths
#     C4->256->512, 512->256->512, 512->128->256 (stride 2, pad 1),
#     256->128->256 twice (stride 1, pad 0);
#   * per level one 3x3 conv with bias (no BN) for loc and one for conf, 80 classes + background,
#     4/6/6/6/4/4 priors per location -> 8732 priors; no L2Norm.
# From NVIDIA's code (the paper gives no detail, our assumption):
#   * prior sizes/steps, box coder stds (0.1, 0.1, 0.2, 0.2), IoU 0.5 matching, 3:1 hard negative
#     mining, SmoothL1 (beta 1), NMS 0.45, score threshold 0.05, 200 detections per image;
#   * xavier-uniform init of extra layers and heads; ImageNet mean/std on RGB.
# Known small differences to NVIDIA's code (mmdet's implementation, our assumption that they do not
# matter): mmdet normalises the loss by the number of positives of the whole batch (NVIDIA: per
# image, then the batch mean), does not clamp priors to the image, applies `nms_pre` over all
# classes (NVIDIA: top 200 per class before NMS) and zeroes the head biases (NVIDIA: PyTorch's
# default).
#
# The backbone below is a placeholder (iResNet-50); every config in configs/ssd300/ sets its own.
# C4 = backbone output channels: 1024 for (i)ResNet/ResStage/PreActResNet, 512 for (i)ResGroup(Fix).
input_size = 300
ssd_extra_channels = (512, 512, 256, 256, 256)  # out_channels of the five extra layers
c4 = 1024

model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet mean/std (torchvision), RGB, 0-255 scale
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='iResNet',
        depth=50,
        num_stages=3,
        strides=(2, 2, 1),  # stage 3 at stride 1 -> 38x38 C4 (NVIDIA's "conv4_block1" surgery)
        dilations=(1, 1, 1),
        out_indices=(2, ),
        frozen_stages=-1,  # NVIDIA trains every layer, BN included
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(
        type='SSDNeck',
        in_channels=(c4, ),
        out_channels=(c4, ) + ssd_extra_channels,
        level_strides=(2, 2, 2, 1, 1),
        level_paddings=(1, 1, 1, 0, 0),
        l2_norm_scale=None,  # no L2Norm (the VGG SSD's conv4_3 normalisation)
        norm_cfg=dict(type='BN'),  # mid widths: mmdet's default out // 2 = 256, 256, 128, 128, 128
        act_cfg=dict(type='ReLU')),
    bbox_head=dict(
        # mmdet's SSDHead (its layers, losses and detections) computed for the whole batch at once
        # (iresnet_mmdet/models/dense_heads, docs/ssd300.md); 'FixedSSDHead' is mmdet's own code
        type='BatchedSSDHead',
        in_channels=(c4, ) + ssd_extra_channels,
        num_classes=80,
        stacked_convs=0,  # a single 3x3 conv (with bias) per level and branch
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            input_size=input_size,
            basesize_ratio_range=(0.15, 0.9),  # min sizes 21,45,99,153,207,261; max 45..315 px
            strides=[8, 16, 32, 64, 100, 300],
            ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2])),  # NVIDIA scale_xy 0.1, scale_wh 0.2
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,  # plus the best prior of every ground-truth box
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        smoothl1_beta=1.,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        score_thr=0.05,
        max_per_img=200))
