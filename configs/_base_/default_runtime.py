# mmdet's default runtime plus the plugin import and mmdet's usual SSD hooks.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)

default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', interval=5, max_keep_ckpts=3, save_best='coco/bbox_mAP',
        rule='greater'))
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW')
]
