# SSD300 (NVIDIA v1.1 topology) with mmdet's ResNet-101 on COCO: paper table row "ResNet-101"
# (figures: iresnet_mmdet/paper.py, SSD300_COCO).
# Paper: topology and backbone (verified by params/GFLOPs). Assumption: the recipe (NVIDIA's
# defaults, see the _base_ files) and ImageNet initialisation from the authors' resnet101 file.
_base_ = './ssd300_r50_8xb32-65e_coco.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(checkpoint='checkpoints/resnet101.pth')))
