# SSD300 (NVIDIA v1.1 topology) with an iResGroupFix-50 backbone on COCO: paper table row
# "iResGroupFix-50" (figures: iresnet_mmdet/paper.py, SSD300_COCO).
# Paper: topology and backbone, including C4 = 512 (layer3 output 1024 // 2) feeding the first extra
# layer and the level-0 heads (verified by params/GFLOPs). Assumption: the recipe (NVIDIA's
# defaults, see the _base_ files) and ImageNet initialisation from the authors' released checkpoint.
_base_ = './ssd300_iresnet50_8xb32-65e_coco.py'

c4 = 512
model = dict(
    backbone=dict(
        type='iResGroupFix', init_cfg=dict(checkpoint='checkpoints/iresgroupfix50.pth')),
    neck=dict(in_channels=(c4, ), out_channels=(c4, ) + _base_.ssd_extra_channels),
    bbox_head=dict(in_channels=(c4, ) + _base_.ssd_extra_channels))
