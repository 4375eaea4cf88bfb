# Faster R-CNN with an iResNet-50 backbone whose 3x3 convs in stages 2-4 (C3-C5) are deformable
# (mmcv's DCN), FPN, 1x schedule on COCO: mmdet's DCN config with the backbone type changed.
_base_ = 'mmdet::dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py'
custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='iResNet', init_cfg=dict(type='Pretrained', checkpoint='checkpoints/iresnet50.pth')))
