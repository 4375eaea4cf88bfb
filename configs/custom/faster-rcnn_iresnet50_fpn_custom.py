# Faster R-CNN + FPN with an iResNet-50 backbone on your own COCO-format data
# (docs/custom_dataset.md). Copy this file and set the five data settings below; the model and
# mmdet's 1x schedule are those of configs/faster_rcnn/faster-rcnn_iresnet50_fpn_1x_coco.py.
_base_ = '../faster_rcnn/faster-rcnn_iresnet50_fpn_1x_coco.py'

data_root = 'data/my_dataset/'
classes = ('cat', 'dog')  # the annotation files' category names, in the files' order
train_ann, train_images = 'annotations/train.json', 'train/'
val_ann, val_images = 'annotations/val.json', 'val/'

metainfo = dict(classes=classes)
# the RoI head classifies; the RPN head stays class-agnostic (num_classes=1)
model = dict(roi_head=dict(bbox_head=dict(num_classes=len(classes))))
train_dataloader = dict(
    dataset=dict(
        data_root=data_root, metainfo=metainfo, ann_file=train_ann,
        data_prefix=dict(img=train_images)))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root, metainfo=metainfo, ann_file=val_ann,
        data_prefix=dict(img=val_images)))
test_dataloader = val_dataloader
# the evaluator reads the annotation file itself: a full path, not relative to data_root
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator
