# SSD300 (NVIDIA v1.1 topology) with an iResNet-50 backbone on COCO: paper table row "iResNet-50"
# (figures: iresnet_mmdet/paper.py, SSD300_COCO).
# Paper: topology and backbone (verified by params/GFLOPs). Assumption: the recipe (NVIDIA's
# defaults, see the _base_ files) and ImageNet initialisation from the authors' released checkpoint.
_base_ = [
    '../_base_/models/ssd300_nvidia.py', '../_base_/datasets/coco_ssd300_nvidia.py',
    '../_base_/schedules/ssd300_nvidia_65e.py', '../_base_/default_runtime.py'
]

# iRes*: no stem max-pool, strides (2, 2, 1); layer3's max-pool shortcut keeps stride 1 (38x38).
model = dict(
    backbone=dict(
        type='iResNet',
        depth=50,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/iresnet50.pth')))

# channels-last convolutions on CUDA (1.03-1.16x on an H200 with AMP); CPU runs keep NCHW
custom_hooks = _base_.custom_hooks + [dict(type='ChannelsLastHook', devices=('cuda', ))]
