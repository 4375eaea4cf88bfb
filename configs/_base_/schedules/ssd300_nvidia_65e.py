# NVIDIA SSD300 v1.1 default training recipe (README / main.py of DeepLearningExamples).
# Whether the iResNet paper trained exactly like this could not be verified (its text gives no
# detail): this whole file is our assumption, the most likely recipe, not a quote of the paper.
#   * 65 epochs; SGD momentum 0.9; weight decay 5e-4 with none on BN and bias parameters;
#   * lr 2.6e-3 per 32 images: 2.6e-3 x 256 / 32 = 0.0208 for 8 GPUs x 32 images;
#   * linear warm-up over 300 iterations; lr x0.1 at epochs 43 and 54.
# NVIDIA trains with AMP: add `--amp` to tools/train.py on GPUs (AmpOptimWrapper).
max_epochs = 65
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 300, by_epoch=False, begin=0, end=300),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[43, 54],
        gamma=0.1)
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2.6e-3 * 256 / 32, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))

# lr above is for a total batch of 256. With `tools/train.py --auto-scale-lr`, mmdet rescales it
# linearly to the real total batch (lr x real_batch / 256 = 2.6e-3 x real_batch / 32), which is
# exactly NVIDIA's rule for any number of GPUs or images per GPU.
auto_scale_lr = dict(enable=False, base_batch_size=256)
