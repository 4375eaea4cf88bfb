# Mask R-CNN with an iResNet-50 backbone and FPN, mmdet's 1x schedule on COCO: mmdet's ResNet-50 config
# with the backbone type changed, initialised from the authors' ImageNet checkpoint converted by
# tools/model_converters/iresnet_official_to_mmdet.py (docs/converter.md).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='iResNet', init_cfg=dict(type='Pretrained', checkpoint='checkpoints/iresnet50.pth')))
