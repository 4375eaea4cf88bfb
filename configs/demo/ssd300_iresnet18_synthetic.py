# The CPU demo (`make demo`): SSD300 (NVIDIA v1.1 topology, configs/_base_/models/ssd300_nvidia.py)
# with a half-width iResNet-18 backbone cut after stage 3, trained from scratch on the bundled
# synthetic shapes data (tools/data/make_synthetic_coco.py: 400 train / 100 val images of 320x320,
# 5 categories, small, medium and large objects). Sized to train and evaluate in minutes on a CPU;
# the measured time and AP (trained and untrained, on the CPUs tried) are in docs/training.md.
#
# Differences to the COCO configs, all for speed on a CPU (our choices, not the paper's):
#   * iResNet-18 at half width (base_channels=32, C4 = 128 channels) instead of iResNet-50, and
#     narrower extra layers; the topology (cut, strides, 8732 priors, 300x300 input) is unchanged;
#   * plain resize + flip: SSD's crop/colour augmentation learns far slower from scratch;
#   * no ImageNet initialisation (nothing to download); AdamW, which learns much faster from
#     scratch than the SGD recipe in the few hundred iterations a CPU demo can afford;
#   * ChannelsLastHook: channels_last weights, ~20% faster convolutions on CPU.
_base_ = [
    '../_base_/models/ssd300_nvidia.py', '../_base_/datasets/synthetic_coco.py',
    '../_base_/default_runtime.py'
]

base_width = 32
c4 = 4 * base_width  # iResNet-18 (basic blocks): stage 3 has 4 x base_channels channels
extra_channels = (256, 256, 128, 128, 128)

model = dict(
    backbone=dict(
        type='iResNet', depth=18, base_channels=base_width, num_stages=3, strides=(2, 2, 1),
        out_indices=(2, ), init_cfg=None),
    neck=dict(in_channels=(c4, ), out_channels=(c4, ) + extra_channels),
    # the 5 categories of the synthetic data (configs/_base_/datasets/synthetic_coco.py)
    bbox_head=dict(in_channels=(c4, ) + extra_channels, num_classes=5))

# ---- schedule ------------------------------------------------------------------------------------
max_epochs = 16
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
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
auto_scale_lr = dict(enable=False, base_batch_size=8)

# ---- runtime -------------------------------------------------------------------------------------
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
custom_hooks = [
    dict(type='NumClassCheckHook'), dict(type='ChannelsLastHook'), dict(type='ExactResumeHook')]
log_processor = dict(by_epoch=True, window_size=10)
# the same data order, initialisation and augmentation on every run (and after --resume: the
# training workers start once per epoch, seeded per epoch by ExactResumeHook); the figures can
# still differ across CPUs (oneDNN's kernels differ, docs/training.md)
randomness = dict(seed=0)
train_dataloader = dict(persistent_workers=False)
