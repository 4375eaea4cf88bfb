"""What a row costs: images per epoch, the detector benchmark's speed, GPU-hours.

The estimate of one row, in GPU-hours, is::

    (epochs x train images / train img/s  +  evaluations x val images / inference img/s) / 3600

with the img/s of one GPU at the config's batch per GPU, measured by
``benchmarks/detector_speed.py`` (a synthetic batch: data loading is not timed, so a run whose
loader cannot keep up is slower) or given with ``--img-per-s``. On G GPUs a row takes about
GPU-hours / G hours (linear scaling assumed). Evaluations: the validations during training
(every ``val_interval`` epochs and after the last) and the final test.

One epoch of COCO train2017: of its 118,287 images, mmdet's ``CocoDataset`` keeps the 117,266
that have at least one annotation (``filter_cfg=dict(filter_empty_gt=True, min_size=32)`` of
mmdet's ``coco_detection`` base, which our dataset config inherits; every COCO image is larger
than 32 pixels). Evaluation runs on the 5,000 images of val2017.
"""
import json
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

from iresnet_mmdet.errors import ToolError

COCO_TRAIN2017_IMAGES = 117266
COCO_VAL2017_IMAGES = 5000
_COCO_COUNTS = {'instances_train2017.json': COCO_TRAIN2017_IMAGES,
                'instances_val2017.json': COCO_VAL2017_IMAGES}
#: ``benchmarks/detector_speed.py`` rounds (untimed, timed) of the measurement at the start.
SPEED_ROUNDS = (2, 5)
#: Annotation files up to this size are counted; bigger ones must be COCO's own.
_COUNT_MAX_BYTES = 64 * 2**20


def innermost_dataset(loader) -> dict:
    """The dataset config of a dataloader config, under any dataset wrappers."""
    dataset = loader['dataset']
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def _ann_file(dataset) -> str:
    root = dataset.get('data_root') or ''
    return osp.join(root, dataset['ann_file'])


def count_images(ann_file: str, filter_cfg: Optional[dict]) -> Optional[int]:
    """Images of an annotation file that mmdet's ``CocoDataset`` keeps with ``filter_cfg``
    (``filter_empty_gt``: at least one annotation; ``min_size``: shorter side in pixels).

    COCO 2017's own files are not read: their counts are known (module docstring).

    Returns:
        int or None: The count; None for a file that is not there (yet).

    Raises:
        ToolError: For a file too big to count that is not COCO's.
    """
    name = osp.basename(ann_file)
    if name in _COCO_COUNTS:
        return _COCO_COUNTS[name]
    if not osp.isfile(ann_file):
        return None
    if osp.getsize(ann_file) > _COUNT_MAX_BYTES:
        raise ToolError(f"cannot count the images of '{ann_file}' for the cost estimate (over "
                        f'{_COUNT_MAX_BYTES >> 20} MB); give a COCO 2017 layout')
    with open(ann_file) as f:
        coco = json.load(f)
    filter_cfg = filter_cfg or {}
    annotated = {ann['image_id'] for ann in coco.get('annotations', [])}
    min_size = filter_cfg.get('min_size', 0)
    return sum(1 for image in coco['images']
               if (not filter_cfg.get('filter_empty_gt') or image['id'] in annotated)
               and min(image['width'], image['height']) >= min_size)


@dataclass(frozen=True)
class Workload:
    """The images one row trains and evaluates.

    Attributes:
        epochs: training epochs.
        train_images: images of one epoch (None while the data is not there).
        evaluations: validations during training plus the final test.
        eval_images: images of one evaluation (None while the data is not there).
        batch: images per GPU and training step.
    """
    epochs: int
    train_images: Optional[int]
    evaluations: int
    eval_images: Optional[int]
    batch: int


def workload(cfg) -> Workload:
    """The workload of a row's config (as run: with the run's options)."""
    train = innermost_dataset(cfg.train_dataloader)
    test = innermost_dataset(cfg.test_dataloader)
    epochs = cfg.train_cfg.max_epochs
    validations = 0
    if cfg.get('val_cfg') and cfg.get('val_dataloader'):
        interval = cfg.train_cfg.get('val_interval', 1)
        validations = epochs // interval + (epochs % interval != 0)
    return Workload(epochs, count_images(_ann_file(train), train.get('filter_cfg')),
                    validations + 1, count_images(_ann_file(test), None),
                    cfg.train_dataloader.batch_size)


@dataclass(frozen=True)
class Speed:
    """Images per second of one GPU (or CPU process).

    Attributes:
        train: training img/s.
        infer: inference img/s, or None (then evaluations are left out of the estimate).
        source: where the figures come from.
    """
    train: float
    infer: Optional[float]
    source: str


@dataclass(frozen=True)
class Estimate:
    """The cost of one row.

    Attributes:
        gpu_hours: the whole row.
        hours: wall-clock hours of the whole row on the run's GPUs.
        left_gpu_hours: what remains of it, from the row's state.
    """
    gpu_hours: float
    hours: float
    left_gpu_hours: float

    def record(self) -> dict:
        return asdict(self)


def estimate(work: Workload, speed: Speed, gpus: int, epochs_done: int,
             evaluations_left: int) -> Estimate:
    """The GPU-hours of one row (module docstring).

    Args:
        work: The row's workload.
        speed: img/s of one GPU.
        gpus: GPUs of each training.
        epochs_done: epochs already trained.
        evaluations_left: evaluations still to run.
    """
    train_seconds = work.epochs * work.train_images / speed.train
    eval_seconds = work.evaluations * work.eval_images / speed.infer if speed.infer else 0.0
    left = ((work.epochs - epochs_done) * work.train_images / speed.train
            + (evaluations_left * work.eval_images / speed.infer if speed.infer else 0.0))
    total = train_seconds + eval_seconds
    return Estimate(total / 3600, total / 3600 / gpus, left / 3600)


def speed_arguments(configs: Sequence[str], device: str, amp: bool, batch: int,
                    json_path: str, rounds: Tuple[int, int] = (2, 5)) -> list:
    """The ``benchmarks/detector_speed.py`` arguments that measure the rows' configs as they run:
    the full training and inference steps (losses and post-processing included), eager, with the
    configs' heads, at the batch per GPU of the configs, under the allocator the trainings get
    (``--malloc system``: the environment's, as ``tools/train.py`` runs).

    Args:
        configs: The config files.
        device: ``'cuda'`` or ``'cpu'``.
        amp: float16 autocast.
        batch: Images per step.
        json_path: Where the benchmark writes its records.
        rounds: Untimed and timed rounds (``--warmup``, ``--repeats``).
    """
    arguments = [*configs, '--mode', 'both', '--steps', 'full', '--heads', 'config',
                 '--device', device, '--batch', str(batch),
                 '--warmup', str(rounds[0]), '--repeats', str(rounds[1]), '--malloc', 'system',
                 '--json', json_path]
    return arguments + (['--amp'] if amp else [])


def read_speed(json_path: str, configs: Sequence[str], source: str) -> Dict[str, Speed]:
    """The img/s of each config from a ``benchmarks/detector_speed.py --json`` file.

    Raises:
        ToolError: If the file lacks a config or a mode.
    """
    with open(json_path) as f:
        records = json.load(f)
    found = {}
    for record in records:
        if (record.get('variant'), record.get('step', 'full'), record.get('head', 'config')) == \
                ('eager', 'full', 'config'):
            found[(osp.abspath(record['config']), record['mode'])] = float(record['img_per_s'])
    speeds = {}
    for config in configs:
        key = osp.abspath(config)
        if (key, 'train') not in found:
            raise ToolError(f"'{json_path}' has no training speed of {config}; measure again "
                            'or give --img-per-s')
        speeds[config] = Speed(found[(key, 'train')], found.get((key, 'infer')), source)
    return speeds
