"""Pre-flight checks of a config's datasets: data roots, annotation files, classes, images.

Run by the tools before any work, so that bad data is one error line naming the fix, not a crash
deep inside mmengine or pycocotools. The first images of each dataset are checked to exist; with
``all_images=True`` (the tools' ``--check``) every image file is checked, fast: its first and last
bytes (:func:`image_problem`), so a missing, empty, truncated or foreign file is found before the
run reaches it.
"""
import os.path as osp
import sys
import time

from ..checkpoint import is_remote
from ..errors import ToolError

# Annotation files up to this size are fully validated before training; larger ones (COCO
# train2017 is 450 MB) only for existence, so the check does not double their loading time.
FULL_CHECK_MAX_BYTES = 64 * 2**20
_IMAGES_CHECKED = 3
_NAMED = 3  # bad images named in a message
_TAIL = 1024  # bytes read from the end of an image file

_JPEG_START, _JPEG_SCAN, _JPEG_END = b'\xff\xd8', b'\xff\xda', b'\xff\xd9'
_PNG_START = b'\x89PNG\r\n\x1a\n'


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


def check_data(cfg, splits, all_images=False):
    """Check the datasets of the given splits before any work is done.

    Checks that each data root and image directory exists, that the annotation file exists and
    (up to ``FULL_CHECK_MAX_BYTES``) is a valid COCO detection file with the config's classes, and
    that its first images exist, or with ``all_images`` that every image is a complete file.

    Args:
        cfg (mmengine.Config): The config.
        splits (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``.
        all_images (bool): Check every image file (:func:`image_problem`), with a progress line
            on stderr.

    Raises:
        ToolError: Naming the first problem and the fix.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset, where in _dataset_cfgs(loader.get('dataset'), f'{split}_dataloader.dataset'):
            _check_dataset(dataset, where, all_images)
        evaluators = cfg.get(f'{split}_evaluator')
        if split != 'train' and evaluators:
            for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
                ann = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
                if ann and not is_remote(ann) and not osp.isfile(ann):
                    raise ToolError(f"annotation file '{ann}' of {split}_evaluator does not "
                                    'exist; set ann_file to the one of the dataset')


def _check_dataset(dataset, where, all_images):
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
        paths = [_join(img_dir, str(image.get('file_name', ''))) for image in coco['images']]
        if all_images:
            _check_all_images(paths, ann_path, where, _skips_bad_images(dataset))
        else:
            _check_first_images(paths, ann_path)


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


def _check_first_images(paths, ann_path):
    for path in paths[:_IMAGES_CHECKED]:
        if not osp.isfile(path):
            raise ToolError(f"image '{path}' listed in '{ann_path}' does not exist; check "
                            'data_root and data_prefix.img')


def _check_all_images(paths, ann_path, where, skipped):
    bad = []
    with _Progress(len(paths), f'checking the images of {where}') as progress:
        for path in paths:
            problem = image_problem(path)
            if problem:
                bad.append(f"'{path}' {problem}")
            progress.step()
    if not bad:
        return
    named = '; '.join(bad[:_NAMED]) + ('; ...' if len(bad) > _NAMED else '')
    summary = f'{len(bad)} of the {len(paths)} images listed in \'{ann_path}\' ({where}) '
    if skipped:  # the loader of this dataset skips them (SafeLoadImageFromFile)
        print(f'warning: {summary}will be skipped: {named}', file=sys.stderr)
        return
    raise ToolError(f'{summary}cannot be used: {named}. Replace or remove them (or check '
                    'data_root and data_prefix.img)')


def _skips_bad_images(dataset):
    """Whether the dataset's pipeline loads images with ``SafeLoadImageFromFile(skip_bad_images=
    True)`` (which skips a bad image during training) and the dataset is not in test mode."""
    pipeline = dataset.get('pipeline') or []
    first = pipeline[0] if pipeline and isinstance(pipeline[0], dict) else {}
    return (first.get('type') == 'SafeLoadImageFromFile' and first.get('skip_bad_images', True)
            and not dataset.get('test_mode', False))


def image_problem(path):
    """Why an image file cannot be used, from its first and last bytes; None if it looks complete.

    JPEG: starts with SOI and has an end-of-image marker after its last scan (marker bytes cannot
    occur inside the entropy-coded data, so a file cut anywhere after its header has none). PNG:
    the IEND chunk. GIF: the trailer byte. BMP and WebP: the file is as long as its header says.
    Only the first and last kilobyte are read, unless a JPEG carries data after its end marker.
    TIFF is not checked further; any other file is decoded with OpenCV.

    Args:
        path (str): The image file.

    Returns:
        str or None: The problem, phrased to follow the file's name (``'is empty (0 bytes)'``).
    """
    try:
        size = osp.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(32)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except FileNotFoundError:
        return 'does not exist'
    except OSError as exc:
        return f'cannot be read ({exc.strerror or exc})'
    if size == 0:
        return 'is empty (0 bytes)'
    if head.startswith(_JPEG_START):
        return None if _JPEG_END in tail else _jpeg_problem(path)
    if head.startswith(_PNG_START):
        return None if b'IEND' in tail else 'is a truncated PNG file (no IEND chunk at its end)'
    if head[:6] in (b'GIF87a', b'GIF89a'):
        return None if tail.rstrip(b'\0').endswith(b';') else 'is a truncated GIF file'
    declared = _declared_size(head)
    if declared is not None:
        return None if size >= declared else (
            f'is truncated ({size} of the {declared} bytes its header declares)')
    if head[:4] in (b'II*\0', b'MM\0*'):  # TIFF: its layout has no fixed end to check
        return None
    return _decode_problem(path)


def _declared_size(head):
    """The file size a BMP or WebP header declares, else None."""
    if head[:2] == b'BM':
        return int.from_bytes(head[2:6], 'little')
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return int.from_bytes(head[4:8], 'little') + 8
    return None


def _jpeg_problem(path):
    """A JPEG without an end marker in its last kilobyte: read it whole (data may follow the
    marker, e.g. a camera's trailer)."""
    with open(path, 'rb') as f:
        data = f.read()
    last_scan = data.rfind(_JPEG_SCAN)
    if last_scan < 0:
        return 'is a truncated JPEG file (it ends before its image data)'
    if data.find(_JPEG_END, last_scan) < 0:
        return 'is a truncated JPEG file (no end-of-image marker after its image data)'
    return None


def _decode_problem(path):
    import cv2
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # the answer is ours to give, not OpenCV's log
    try:
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    finally:
        logging.setLogLevel(level)
    return 'is not an image file that OpenCV can decode' if image is None else None


class _Progress:
    """A progress line on stderr: redrawn in place on a terminal, one summary line otherwise."""

    def __init__(self, total, label):
        self.total, self.label = total, label
        self.done, self.start, self.shown = 0, time.monotonic(), 0.0
        self.live = sys.stderr.isatty()

    def __enter__(self):
        return self

    def step(self):
        self.done += 1
        now = time.monotonic()
        if self.live and (now - self.shown > 0.2 or self.done == self.total):
            self.shown = now
            width = 30
            filled = width * self.done // max(self.total, 1)
            sys.stderr.write(f'\r{self.label}: [{"#" * filled}{"." * (width - filled)}] '
                             f'{self.done}/{self.total}')
            sys.stderr.flush()

    def __exit__(self, *exc):
        seconds = time.monotonic() - self.start
        start, padding = ('\r', ' ' * 20) if self.live else ('', '')
        sys.stderr.write(f'{start}{self.label}: {self.done}/{self.total} in {seconds:.1f} s'
                         f'{padding}\n')
        return False
