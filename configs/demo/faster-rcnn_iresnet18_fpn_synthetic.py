# Evidence that the FPN detectors learn, within minutes on a CPU: Faster R-CNN + FPN with a
# half-width iResNet-18 (all four stages), from scratch on the bundled synthetic data
# (docs/fpn_detectors.md: the command, the time and the AP before and after training).
# Narrow everywhere for speed (our choice): iResNet-18 at base width 32, 64 FPN channels; mmdet's
# Faster R-CNN otherwise (anchors, samplers, losses, test_cfg). AdamW as in the SSD300 demo.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py', '../_base_/datasets/synthetic_coco.py',
    '../_base_/default_runtime.py'
]

base_width = 32
fpn_channels = 64
model = dict(
    backbone=dict(
        type='iResNet', depth=18, base_channels=base_width, frozen_stages=-1, norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[base_width * 2**i for i in range(4)], out_channels=fpn_channels),
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        # the 5 categories of the synthetic data (configs/_base_/datasets/synthetic_coco.py)
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=256, num_classes=5)))

max_epochs = 8
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min_ratio=0.05, begin=0,
         end=max_epochs, by_epoch=True)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, save_best=None))
randomness = dict(seed=0)
train_dataloader = dict(persistent_workers=False)  # exact --resume (ExactResumeHook)
