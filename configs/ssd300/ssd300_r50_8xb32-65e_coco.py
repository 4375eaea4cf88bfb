# SSD300 (NVIDIA v1.1 topology) with mmdet's ResNet-50 on COCO: paper table row "ResNet-50"
# (figures: iresnet_mmdet/paper.py, SSD300_COCO). This is NVIDIA's own SSD300 v1.1 backbone.
# Paper: topology and backbone (verified by params/GFLOPs). Assumption: the recipe (NVIDIA's
# defaults, see the _base_ files) and ImageNet initialisation from the authors' resnet50 checkpoint
# (torchvision key names, loads into mmdet's ResNet; 'torchvision://resnet50' works too).
_base_ = './ssd300_iresnet50_8xb32-65e_coco.py'

# mmdet's ResNet ("pytorch" style = stride on the 3x3 conv, like torchvision and the authors'
# resnet.py): stem max-pool, strides (1, 2, 1) -> layer3 at stride 1, 38x38 C4 with 1024 channels.
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=3,
        strides=(1, 2, 1),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/resnet50.pth')))
