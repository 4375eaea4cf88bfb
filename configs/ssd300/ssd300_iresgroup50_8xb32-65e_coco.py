# SSD300 (NVIDIA v1.1 topology) with an iResGroup-50 backbone on COCO: paper table row
# "iResGroup-50" (figures: iresnet_mmdet/paper.py, SSD300_COCO).
# Paper: topology and backbone, including C4 = 512 and the stride-1 max-pool kept in layer3's
# shortcut (only that reproduces the paper's GFLOPs). Assumption: the recipe (NVIDIA's defaults,
# see the _base_ files) and ImageNet initialisation from the authors' released checkpoint.
_base_ = './ssd300_iresgroupfix50_8xb32-65e_coco.py'

model = dict(
    backbone=dict(type='iResGroup', init_cfg=dict(checkpoint='checkpoints/iresgroup50.pth')))
