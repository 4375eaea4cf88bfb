# SSD300 (NVIDIA v1.1 topology) with a ResStage-50 backbone on COCO. Not a row of the paper's
# detection table: our configuration, the same topology and cut as the table rows (ResNet-style
# stem max-pool and strides (1, 2, 1); C4 = 1024).
# Assumption: the recipe (NVIDIA's defaults, see the _base_ files) and ImageNet initialisation from
# the authors' released resstage50 checkpoint.
_base_ = './ssd300_iresnet50_8xb32-65e_coco.py'

model = dict(
    backbone=dict(
        type='ResStage',
        strides=(1, 2, 1),
        init_cfg=dict(checkpoint='checkpoints/resstage50.pth')))
