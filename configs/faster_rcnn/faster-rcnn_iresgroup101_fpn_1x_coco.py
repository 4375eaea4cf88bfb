# Faster R-CNN with an iResGroup-101 backbone and FPN, 1x schedule on COCO.
_base_ = './faster-rcnn_iresgroup50_fpn_1x_coco.py'

model = dict(backbone=dict(depth=101, init_cfg=dict(checkpoint='checkpoints/iresgroup101.pth')))
