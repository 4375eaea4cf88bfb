# mmdet's default runtime plus the plugin import and mmdet's usual SSD hooks.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)

# Checkpoints are written atomically (a file appears only complete, also when the run is killed
# while saving), and every training epoch is seeded from (seed, epoch, rank), so that --resume
# continues bit-identically (iresnet_mmdet/engine/resume.py; the training loader's workers must
# start once per epoch: persistent_workers=False, which tools/train.py sets).
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', interval=5, max_keep_ckpts=3, save_best='coco/bbox_mAP',
        rule='greater', backend_args=dict(backend='atomic_local')))
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='ExactResumeHook')
]
