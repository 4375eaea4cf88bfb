# RetinaNet with an iResNet-101 backbone and FPN, 1x schedule on COCO.
_base_ = './retinanet_iresnet50_fpn_1x_coco.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(checkpoint='checkpoints/iresnet101.pth')))
