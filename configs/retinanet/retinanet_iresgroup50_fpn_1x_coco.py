# RetinaNet with an iResGroup-50 backbone and FPN, 1x schedule on COCO. The ResGroup block outputs
# half the channels of a bottleneck (128, 256, 512, 1024): the FPN takes them as they are.
_base_ = './retinanet_iresnet50_fpn_1x_coco.py'

model = dict(
    backbone=dict(type='iResGroup', init_cfg=dict(checkpoint='checkpoints/iresgroup50.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
