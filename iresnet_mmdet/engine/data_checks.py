"""Pre-flight checks of a config's datasets: data roots, annotation files, classes, first images.

Run by the tools before any work, so that bad data is one error line naming the fix, not a crash
deep inside mmengine or pycocotools.
"""
import os.path as osp

from ..checkpoint import is_remote
from ..errors import ToolError

# Annotation files up to this size are fully validated before training; larger ones (COCO
# train2017 is 450 MB) only for existence, so the check does not double their loading time.
FULL_CHECK_MAX_BYTES = 64 * 2**20
_IMAGES_CHECKED = 3


def _join(root, path):
    if not root or osp.isabs(path) or is_remote(path):
        return path
    return osp.join(root, path)


def _dataset_cfgs(dataset, where):
    """Yield ``(config dict, config key)`` of every leaf dataset under wrappers."""
    if not isinstance(dataset, dict):
        return
    if 'dataset' in dataset:
        yield from _dataset_cfgs(dataset['dataset'], f'{where}.dataset')
    if 'datasets' in dataset:
        for i, sub in enumerate(dataset['datasets']):
            yield from _dataset_cfgs(sub, f'{where}.datasets[{i}]')
    if 'ann_file' in dataset or 'data_root' in dataset:
        yield dataset, where


def check_data(cfg, splits):
    """Check the datasets of the given splits before any work is done.

    Checks that each data root and image directory exists, that the annotation file exists and
    (up to ``FULL_CHECK_MAX_BYTES``) is a valid COCO detection file with the config's classes, and
    that its first images exist.

    Args:
        cfg (mmengine.Config): The config.
        splits (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``.

    Raises:
        ToolError: Naming the first problem and the fix.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset, where in _dataset_cfgs(loader.get('dataset'), f'{split}_dataloader.dataset'):
            _check_dataset(dataset, where)
        evaluators = cfg.get(f'{split}_evaluator')
        if split != 'train' and evaluators:
            for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
                ann = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
                if ann and not is_remote(ann) and not osp.isfile(ann):
                    raise ToolError(f"annotation file '{ann}' of {split}_evaluator does not "
                                    'exist; set ann_file to the one of the dataset')


def _check_dataset(dataset, where):
    root = dataset.get('data_root') or ''
    if root and not is_remote(root) and not osp.isdir(root):
        raise ToolError(
            f"data directory '{root}' ({where}.data_root) does not exist. Put the dataset there or "
            'point data_root to it (e.g. --cfg-options ...data_root=DIR); the bundled demo data '
            f'is made by: .venv/bin/python tools/data/make_synthetic_coco.py --out {root}')
    ann_file = dataset.get('ann_file')
    if not ann_file:
        return
    ann_path = _join(root, ann_file)
    if is_remote(ann_path):
        return
    if not osp.isfile(ann_path):
        raise ToolError(f"annotation file '{ann_path}' ({where}.ann_file) does not exist")
    prefix = dataset.get('data_prefix') or {}
    img_dir = _join(root, prefix.get('img', '')) if isinstance(prefix, dict) else root
    if img_dir and not is_remote(img_dir) and not osp.isdir(img_dir):
        raise ToolError(f"image directory '{img_dir}' ({where}.data_prefix.img) does not exist")
    if ann_path.endswith('.json') and osp.getsize(ann_path) <= FULL_CHECK_MAX_BYTES:
        coco = _load_coco(ann_path)
        _check_classes(coco, dataset, ann_path, where)
        _check_images(coco, img_dir, ann_path)


def _load_coco(path):
    from ..evaluation.coco_eval import CocoFormatError, load_gt
    try:
        return load_gt(path)
    except CocoFormatError as exc:
        raise ToolError(str(exc).rstrip('.')) from None


def _check_classes(coco, dataset, ann_path, where):
    names = {cat['name'] for cat in coco['categories']}
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes:
        missing = [c for c in classes if c not in names]
        if missing:
            raise ToolError(
                f"classes {missing[:5]} of {where}.metainfo are not categories of '{ann_path}' "
                f'(it has {sorted(names)[:10]}); set metainfo.classes to its category names')
        return
    # No metainfo: the dataset class's own classes (e.g. COCO's 80). A file sharing none of them
    # would give an empty dataset and a crash deep inside mmengine.
    classes = _default_classes(dataset.get('type'))
    if classes and not names.intersection(classes):
        raise ToolError(
            f"none of the categories of '{ann_path}' (it has {sorted(names)[:10]}) is a class of "
            f"{dataset.get('type')} (e.g. {list(classes[:5])}); set {where}.metainfo = "
            "dict(classes=(...)) to the file's category names")


def _default_classes(dataset_type):
    from mmdet.registry import DATASETS
    dataset_cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else None
    return tuple(getattr(dataset_cls, 'METAINFO', {}).get('classes', ()))


def _check_images(coco, img_dir, ann_path):
    for image in coco['images'][:_IMAGES_CHECKED]:
        path = _join(img_dir, str(image.get('file_name', '')))
        if not osp.isfile(path):
            raise ToolError(f"image '{path}' listed in '{ann_path}' does not exist; check "
                            'data_root and data_prefix.img')
