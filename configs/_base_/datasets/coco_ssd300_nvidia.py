# COCO 2017 detection data for SSD300 with NVIDIA SSD300 v1.1-like augmentation.
#
# Layout (standard, mmdet's coco_detection base): data/coco/{train2017,val2017}/ and
# data/coco/annotations/instances_{train,val}2017.json. Train on train2017, evaluate on val2017
# (the paper's table is COCO val2017).
#
# From NVIDIA's code (the paper gives no training detail, our assumption):
#   * SSD random crop: min IoU in {no crop, 0.1, 0.3, 0.5, 0.7, 0.9, any}, crop sides in [0.3, 1],
#     aspect in [0.5, 2] (mmdet's MinIoURandomCrop); no zoom-out/Expand;
#   * resize to 300x300 without keeping the aspect ratio; horizontal flip p=0.5; colour jitter.
# Approximations (our assumption): NVIDIA's torchvision ColorJitter(brightness=0.125, contrast=0.5,
# saturation=0.5, hue=0.05) is expressed with mmdet's PhotoMetricDistortion: contrast and saturation
# ranges are the same, hue 0.05 of the circle = 9 OpenCV hue units, and the multiplicative
# brightness +-12.5% becomes an additive +-16 (12.5% of a mid-grey 128); mmdet applies each op
# with p=0.5 and retries a crop mode 50 times, NVIDIA always applies them and redraws the mode after
# each failure.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

# Faster equivalents of mmdet's transforms (iresnet_mmdet/datasets; docs/training.md, "The training
# data pipeline"): FastMinIoURandomCrop, FastRandomFlip and FastPhotoMetricDistortion draw the same
# augmentation as mmdet's MinIoURandomCrop, RandomFlip and PhotoMetricDistortion (their own names
# still work), 2.6-3.1x faster per image in all as measured. SafeLoadImageFromFile decodes as mmcv's
# LoadImageFromFile; in training it skips a truncated, corrupt or unreadable image with a warning
# naming it (skip_bad_images=False: stop with one error naming it).
train_pipeline = [
    dict(
        type='SafeLoadImageFromFile',
        skip_bad_images=True,
        backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='FastMinIoURandomCrop',
        min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),  # plus 'no crop' and 'any' (mmdet adds both)
        min_crop_size=0.3),
    dict(type='Resize', scale=(300, 300), keep_ratio=False),
    dict(type='FastRandomFlip', prob=0.5),
    dict(
        type='FastPhotoMetricDistortion',
        brightness_delta=16,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=9),
    dict(type='PackDetInputs')
]
# Testing keeps mmcv's LoadImageFromFile: mmdet's inferencers (DetInferencer) find and replace it by
# its name; it stops at an undecodable image with an error naming it.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(300, 300), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

# 8 GPUs x 32 images ("8xb32"): NVIDIA's multi-GPU example. Every image is resized to 300x300, so
# no aspect-ratio grouping is needed (batch_sampler=None, as in mmdet's ssd300_coco).
# Loader settings (our assumption, from benchmarks/data_pipeline.py; docs/training.md): 8 workers
# per GPU process (an 8-GPU server with 64+ cores); one fast GPU on its own needs more (15 on a
# 16-core machine: --cfg-options train_dataloader.num_workers=15). Pinned memory for the
# host-to-GPU copy; workers kept across epochs; prefetch_factor left at PyTorch's default (2 batches
# per worker; set, it would make a num_workers=0 override fail).
# packed_pseudo_collate: mmengine's pseudo_collate with each batch's tensors in one shared block per
# dtype, so that the main process does not become the bottleneck receiving ~100 tensors a batch.
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    pin_memory=True,
    persistent_workers=True,
    collate_fn=dict(type='packed_pseudo_collate'),
    batch_sampler=None,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# All 12 COCO figures of the paper's table (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l), from
# the plugin's CocoTableMetric (iresnet_mmdet/evaluation); ann_file comes from mmdet's base.
# faster-coco-eval: figures bit-identical to pycocotools' (the reference), several times faster.
val_evaluator = dict(type='CocoTableMetric', metric='bbox', backend='faster-coco-eval')
test_evaluator = val_evaluator
