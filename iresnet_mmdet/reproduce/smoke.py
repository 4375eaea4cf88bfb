"""The smoke run: the reproduction's whole flow at toy scale, on a CPU, in minutes.

Each row's config is reduced by a config written into the work root (``configs/<row>_smoke.py``,
inheriting the row's own): a depth-18 backbone of the row's family at 1/8 width without ImageNet
weights, narrower extra layers, the bundled synthetic shapes data
(``tools/data/make_synthetic_coco.py``, a few 64-pixel images), a batch of 2 and 2 epochs without
validation during training. The
training pipeline, the head, the losses, the evaluation and every command are the row's own. The
figures measure nothing about the paper's models.
"""
import os.path as osp
from typing import List

from iresnet_mmdet.errors import ToolError

from .launch import ROOT
from .rows import Row

#: The rows the smoke run trains unless others are chosen.
DEFAULT_ROWS = ('ResNet-50', 'iResNet-50')
EPOCHS = 2
BATCH = 2
DEPTH = 18
WIDTH = 8  # base_channels; depth 18 has basic blocks, so stage 3 outputs 4 x WIDTH channels
EXTRA_CHANNELS = (32, 32, 16, 16, 16)
#: tools/data/make_synthetic_coco.py arguments: 4 training and 4 test images of 64 pixels.
DATA_ARGUMENTS = ('--num-train', '4', '--num-val', '4', '--image-size', '64', '--max-objects', '2')
#: Speed measurement rounds (untimed, timed): one step is enough for a toy model's estimate.
SPEED_ROUNDS = (0, 1)
_SYNTHETIC_BASE = osp.join(ROOT, 'configs', '_base_', 'datasets', 'synthetic_coco.py')

_TEMPLATE = '''\
# Written by tools/reproduce_table.py --smoke: the paper row "{name}" at toy scale, to run the
# reproduction's flow end to end on a CPU in minutes (iresnet_mmdet/reproduce/smoke.py). NOT the
# paper's model: a depth-{depth} backbone at base width {width} without ImageNet weights, narrower
# extra layers, the synthetic shapes data, {epochs} epochs of batch {batch}, no validation.
_base_ = {config!r}

c4 = 4 * {width}  # depth {depth}: basic blocks, stage 3 outputs 4 x base_channels
extra_channels = {extra!r}
model = dict(
    backbone=dict(depth={depth}, base_channels={width}, init_cfg=None),
    neck=dict(in_channels=(c4, ), out_channels=(c4, ) + extra_channels),
    bbox_head=dict(in_channels=(c4, ) + extra_channels, num_classes={num_classes}))

data_root = {data_root!r}
metainfo = dict(classes={classes!r})
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False, pin_memory=False,
    prefetch_factor=None,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file={train_ann!r},
                 data_prefix=dict(img={train_img!r})))
test_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file={test_ann!r},
                 data_prefix=dict(img={test_img!r})))
test_evaluator = dict(ann_file=data_root + {test_ann!r})
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(max_epochs={epochs})
default_hooks = dict(checkpoint=dict(interval=1, save_best=None), logger=dict(interval=1))
'''


def config_file(config_dir: str, row: Row) -> str:
    """Where the smoke config of a row is written."""
    return osp.join(config_dir, f'{row.stem}_smoke.py')


def config_text(row: Row, data_root: str) -> str:
    """The smoke config of a row (module docstring), on the synthetic data in ``data_root``.

    The classes and file names of the data come from the project's synthetic dataset config
    (``configs/_base_/datasets/synthetic_coco.py``).
    """
    from mmengine.config import Config
    synthetic = Config.fromfile(_SYNTHETIC_BASE)
    train = synthetic.train_dataloader.dataset
    test = synthetic.test_dataloader.dataset
    return _TEMPLATE.format(
        name=row.name, config=row.config, depth=DEPTH, width=WIDTH, epochs=EPOCHS, batch=BATCH,
        extra=EXTRA_CHANNELS, num_classes=len(synthetic.classes), classes=tuple(synthetic.classes),
        data_root=osp.join(data_root, ''), train_ann=train.ann_file,
        train_img=train.data_prefix.img, test_ann=test.ann_file, test_img=test.data_prefix.img)


def check_rows(rows: List[Row], cfgs: List) -> None:
    """The smoke run needs a depth-18 form of each row's backbone family.

    Args:
        rows: The rows.
        cfgs: Their configs as the paper runs them.

    Raises:
        ToolError: For a row whose family has no depth 18 (the grouped-block families).
    """
    from mmdet.registry import MODELS
    for row, cfg in zip(rows, cfgs):
        backbone = cfg.model.backbone['type']
        depths = getattr(MODELS.get(backbone), 'arch_settings', {})
        if DEPTH not in depths:
            raise ToolError(
                f'--smoke reduces each row to a depth-{DEPTH} backbone, and {backbone} has none '
                f"(row {row.name}); choose smoke rows whose family has depth {DEPTH}, e.g. "
                f"--rows {' '.join(DEFAULT_ROWS)}")
