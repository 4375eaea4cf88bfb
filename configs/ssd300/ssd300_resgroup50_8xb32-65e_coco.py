# SSD300 (NVIDIA v1.1 topology) with a ResGroup-50 backbone on COCO. Not a row of the paper's
# detection table: our configuration, the same topology and cut as the table rows (ResNet-style
# stem max-pool and strides (1, 2, 1); C4 = 512 as for iResGroup).
# Assumption: the recipe (NVIDIA's defaults, see the _base_ files) and ImageNet initialisation from
# the authors' released resgroup50 checkpoint.
_base_ = './ssd300_iresgroupfix50_8xb32-65e_coco.py'

model = dict(
    backbone=dict(
        type='ResGroup',
        strides=(1, 2, 1),
        init_cfg=dict(checkpoint='checkpoints/resgroup50.pth')))
