"""docs/custom_dataset.md: the example configs of configs/custom/ on a dataset of one's own.

A tiny COCO-format dataset with its own class names (written here: 4 images, 2 categories with
ids 7 and 3) trains and evaluates through a copy of the shipped config with its data settings
edited as the page says, the backbone shrunk for speed; the references come from the annotation
files the test writes, not from mmdet's or the plugin's code.
"""
import json
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch

import iresnet_mmdet  # noqa: F401  (registers the backbones built below)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SSD_CONFIG = osp.join(ROOT, 'configs', 'custom', 'ssd300_iresnet50_custom.py')
FPN_CONFIG = osp.join(ROOT, 'configs', 'custom', 'faster-rcnn_iresnet50_fpn_custom.py')
DOC = osp.join(ROOT, 'docs', 'custom_dataset.md')
CLASSES = ('kiwi', 'lemon')
CATEGORY_IDS = {'kiwi': 7, 'lemon': 3}  # listed in the order of CLASSES, as the page asks
IMAGE_SIZE = 160
# iResNet-18 at base width 16 cut after stage 3 (64 channels), narrow SSD extra layers
TINY_BACKBONE = dict(depth=18, base_channels=16, init_cfg=None)
TINY_LEVELS = (64, 128, 128, 64, 64, 64)


def draw_image(path, seed):
    """A grey image with one square (kiwi) and one disc (lemon); returns their COCO boxes."""
    rng = np.random.default_rng(seed)
    image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 90, np.uint8)
    x, y, side = (int(v) for v in rng.integers(8, 60, 3))
    side += 20
    cv2.rectangle(image, (x, y), (x + side - 1, y + side - 1), (40, 200, 60), -1)
    cx, cy, r = int(rng.integers(100, 130)), int(rng.integers(30, 130)), int(rng.integers(12, 25))
    cv2.circle(image, (cx, cy), r, (30, 220, 250), -1)
    cv2.imwrite(path, image)
    return {'kiwi': [x, y, side, side], 'lemon': [cx - r, cy - r, 2 * r + 1, 2 * r + 1]}


def write_split(root, split, seeds):
    """Images under ``root/split/`` and ``root/annotations/split.json``."""
    (root / split).mkdir()
    images, annotations = [], []
    for image_id, seed in enumerate(seeds, start=1):
        name = f'{split}_{seed}.jpg'
        boxes = draw_image(str(root / split / name), seed)
        images.append(dict(id=image_id, file_name=name, width=IMAGE_SIZE, height=IMAGE_SIZE))
        for name, box in boxes.items():
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=CATEGORY_IDS[name], bbox=box,
                                    area=box[2] * box[3], iscrowd=0))
    categories = [dict(id=CATEGORY_IDS[name], name=name) for name in CLASSES]
    with open(root / 'annotations' / f'{split}.json', 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return dict(images=images, annotations=annotations)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('my_dataset')
    (root / 'annotations').mkdir()
    return dict(root=root, train=write_split(root, 'train', (1, 2)),
                val=write_split(root, 'val', (3, 4)))


def edited_copy(path, data_root, folder):
    """A copy of a shipped config with the data settings edited as docs/custom_dataset.md says."""
    with open(path) as f:
        text = f.read()
    edits = {"data_root = 'data/my_dataset/'": f"data_root = '{data_root}/'",
             "classes = ('cat', 'dog')": f'classes = {CLASSES!r}',
             "_base_ = '../": f"_base_ = '{ROOT}/configs/"}
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    copy = osp.join(str(folder), 'my_' + osp.basename(path))
    with open(copy, 'w') as f:
        f.write(text)
    return copy


def custom_config(path, data_root, work_dir, backbone_init=None):
    """The edited copy of a shipped config, with a tiny backbone and one short epoch."""
    from mmengine.config import Config
    cfg = Config.fromfile(edited_copy(path, data_root, work_dir))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        # no worker processes: prefetch_factor must be None then
        cfg[loader].update(batch_size=2, num_workers=0, persistent_workers=False,
                           prefetch_factor=None)
    cfg.model.backbone.update(TINY_BACKBONE, init_cfg=backbone_init)
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(work_dir)
    return cfg


def tiny_ssd_config(data_root, work_dir, backbone_init=None):
    cfg = custom_config(SSD_CONFIG, data_root, work_dir, backbone_init)
    cfg.model.neck.update(in_channels=TINY_LEVELS[:1], out_channels=TINY_LEVELS)
    cfg.model.bbox_head.in_channels = TINY_LEVELS
    return cfg


@pytest.fixture(scope='module')
def trained(dataset, tmp_path_factory):
    """One epoch (one iteration) of the SSD config from 'ImageNet' weights of the tiny backbone,
    then its evaluation. Returns the runner, the metrics and the weights file."""
    from mmdet.registry import MODELS
    from mmengine.runner import Runner
    work_dir = tmp_path_factory.mktemp('work_dir')
    pretrained = work_dir / 'pretrained_backbone.pth'
    torch.manual_seed(0)
    weights = MODELS.build(dict(type='iResNet', num_stages=3, strides=(2, 2, 1),
                                out_indices=(2, ), **TINY_BACKBONE)).state_dict()
    torch.save({'state_dict': weights}, pretrained)
    cfg = tiny_ssd_config(dataset['root'], work_dir,
                          backbone_init=dict(type='Pretrained', checkpoint=str(pretrained)))
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    return dict(runner=runner, metrics=metrics, weights=weights, work_dir=work_dir, cfg=cfg)


def test_labels_follow_the_classes_of_the_config(dataset, trained):
    data = trained['runner'].train_dataloader.dataset
    assert tuple(data.metainfo['classes']) == CLASSES
    by_file = {im['file_name']: im['id'] for im in dataset['train']['images']}
    for info in data.data_list:
        image_id = by_file[osp.basename(info['img_path'])]
        expected = sorted(CLASSES.index(name) for a in dataset['train']['annotations']
                          if a['image_id'] == image_id
                          for name, cid in CATEGORY_IDS.items() if cid == a['category_id'])
        assert sorted(i['bbox_label'] for i in info['instances']) == expected


def test_head_predicts_the_custom_classes(trained):
    head = trained['runner'].model.bbox_head
    assert head.num_classes == len(CLASSES)
    # SSD: one score per class plus background, for each prior of the first level
    assert head.cls_convs[0][-1].out_channels == head.num_base_priors[0] * (len(CLASSES) + 1)


def test_training_step_ran_from_the_pretrained_backbone(trained):
    hub = trained['runner'].message_hub
    assert np.isfinite(hub.get_scalar('train/loss').current())
    backbone = trained['runner'].model.backbone.state_dict()
    # one step at the warm-up lr moves the weights by a few percent; an independent
    # initialisation would differ by about the weights' own size
    for key in ('conv1.weight', 'layer3.0.conv2.weight'):
        loaded = trained['weights'][key]
        change = (backbone[key] - loaded).norm() / loaded.norm()
        assert change < 0.05, (key, change)


def test_evaluation_reads_the_custom_annotations(dataset, trained):
    metrics = trained['metrics']
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
    # ground truth as detections through the config's own evaluator scores AP 1.0: labels,
    # category ids and the evaluator's annotation file agree
    from mmdet.structures import DetDataSample
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator(trained['cfg'].test_evaluator)
    evaluator.dataset_meta = trained['runner'].test_dataloader.dataset.metainfo
    by_image = {}
    for a in dataset['val']['annotations']:
        x, y, w, h = a['bbox']
        label = CLASSES.index({v: k for k, v in CATEGORY_IDS.items()}[a['category_id']])
        by_image.setdefault(a['image_id'], []).append(([x, y, x + w, y + h], label))
    samples = []
    for image_id, objects in by_image.items():
        sample = DetDataSample(metainfo=dict(img_id=image_id, ori_shape=(IMAGE_SIZE,) * 2))
        sample.pred_instances = _instances([b for b, _ in objects], [lab for _, lab in objects])
        samples.append(sample.to_dict())
    evaluator.process(samples)
    assert evaluator.evaluate(len(samples))['coco/bbox_mAP'] == pytest.approx(1.0)


def _instances(boxes, labels):
    from mmengine.structures import InstanceData
    return InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                        scores=torch.ones(len(labels)), labels=torch.tensor(labels))


def test_checkpoint_names_the_custom_classes(trained):
    from iresnet_mmdet.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(str(trained['work_dir'] / 'epoch_1.pth'))
    assert tuple(checkpoint['meta']['dataset_meta']['classes']) == CLASSES


def test_fpn_config_builds_for_the_custom_classes(dataset, tmp_path):
    from mmengine.runner import Runner
    cfg = custom_config(FPN_CONFIG, dataset['root'], tmp_path)
    cfg.model.neck.in_channels = [16 * 2**i for i in range(4)]
    runner = Runner.from_cfg(cfg)
    assert runner.model.roi_head.bbox_head.num_classes == len(CLASSES)
    assert runner.model.rpn_head.num_classes == 1
    assert tuple(runner.val_dataloader.dataset.metainfo['classes']) == CLASSES
    assert cfg.val_evaluator.ann_file == str(dataset['root']) + '/annotations/val.json'


@pytest.mark.parametrize('config', [SSD_CONFIG, FPN_CONFIG], ids=osp.basename)
def test_doc_shows_the_shipped_config(config):
    """docs/custom_dataset.md quotes each example config in full, as shipped."""
    with open(DOC) as f:
        doc = f.read()
    with open(config) as f:
        text = f.read()
    blocks = re.findall(r'```python\n(.*?)```', doc, re.S)
    assert text in blocks, f'{osp.relpath(config, ROOT)} is not quoted as it is'
