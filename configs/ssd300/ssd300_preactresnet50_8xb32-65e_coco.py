# SSD300 (NVIDIA v1.1 topology) with a pre-activation ResNet-50 backbone on COCO. Not a row of the
# paper's detection table and not in the authors' repo: our configuration, the same topology and cut
# as the table rows (ResNet-style stem max-pool and strides (1, 2, 1); C4 = 1024).
# Assumption: the recipe (NVIDIA's defaults, see the _base_ files). No official ImageNet checkpoint
# exists for this model: train one first and point `checkpoint` at it, or set `init_cfg=None` to
# train the backbone from scratch (much weaker with this 65-epoch recipe).
_base_ = './ssd300_iresnet50_8xb32-65e_coco.py'

model = dict(
    backbone=dict(
        type='PreActResNet',
        strides=(1, 2, 1),
        init_cfg=dict(checkpoint='checkpoints/preactresnet50.pth')))
