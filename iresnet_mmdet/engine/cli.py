"""Support for ``tools/train.py`` and ``tools/test.py``: input checks and one-line errors.

Bad input (a missing data directory, a malformed annotation file, a checkpoint of another
architecture, an unknown module type in the config) is reported as one ``error: ...`` line on
stderr with a non-zero exit status instead of a traceback from deep inside mmengine, pycocotools or
torch. Set ``IRESNET_MMDET_DEBUG=1`` to get the full traceback instead.
"""
import json
import os
import os.path as osp
import pickle
import re
import sys

DEBUG_ENV = 'IRESNET_MMDET_DEBUG'
EXIT_BAD_INPUT = 2
# Annotation files up to this size are fully validated before training; larger ones (COCO
# train2017 is 450 MB) only for existence, so the check does not double their loading time.
FULL_CHECK_MAX_BYTES = 64 * 2**20
_IMAGES_CHECKED = 3
_REGISTRY_MISS = re.compile(r'(\S+) is not in the (\S+) registry')


class ToolError(Exception):
    """Bad input to a tool, with a message that names the problem and the fix."""


def rank():
    """This process's global rank from the launcher's environment (0 without one)."""
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def run_main(main):
    """Run a tool's ``main()``; turn known bad-input exceptions into one error line.

    Args:
        main (callable): The tool's main function; its return value is the exit status.
    """
    try:
        status = main()
    except Exception as exc:  # noqa: BLE001  (mapped below, unknown ones re-raised)
        message = describe_error(exc)
        if message is None or os.environ.get(DEBUG_ENV):
            raise
        if rank() == 0:
            print(f'error: {message}', file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(status or 0)


def describe_error(exc):
    """The one-line message for a known kind of bad input, or None for anything else.

    Args:
        exc (BaseException): The exception that ended the tool.

    Returns:
        str or None: The message.
    """
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = ' '.join(text.split())
    if isinstance(exc, ToolError):
        return text
    from iresnet_mmdet.models.backbones import BackboneConfigError
    if isinstance(exc, BackboneConfigError):
        return text
    match = _REGISTRY_MISS.search(text)
    if isinstance(exc, KeyError) and match:
        return unknown_type_message(match.group(1).strip('`\'"'), match.group(2))
    if isinstance(exc, json.JSONDecodeError):
        return f'an annotation file is not valid JSON ({text}); check the ann_file of the config'
    if isinstance(exc, pickle.UnpicklingError):
        return unpickling_message(text)
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or text
        return f'file not found: {name}'
    return None


def unknown_type_message(name, registry, where='the config'):
    """Message for a ``type`` that no registry knows."""
    hint = ''
    if 'model' in registry:
        plugin = sorted(_plugin_models())
        if plugin:
            hint = f' The plugin registers: {", ".join(plugin)}.'
    return (f"unknown type '{name}' in {where}: it is not in the {registry} registry. Check the "
            "spelling and that the config has custom_imports = dict(imports=['iresnet_mmdet'], "
            f'allow_failed_imports=False).{hint}')


def check_model_types(cfg):
    """Check the ``type`` of the model and of its direct parts (backbone, neck, heads, ...).

    Catches a misspelt or unregistered backbone before the runner prints its whole config.

    Args:
        cfg (mmengine.Config): The config.

    Raises:
        ToolError: For a type that the model registry does not know.
    """
    from mmdet.registry import MODELS
    model = cfg.get('model')
    if not isinstance(model, dict):
        return
    parts = [('model', model)] + [(f'model.{key}', value) for key, value in model.items()
                                  if isinstance(value, dict) and key != 'init_cfg']
    for where, part in parts:
        name = part.get('type')
        if isinstance(name, str) and MODELS.get(name) is None:
            raise ToolError(unknown_type_message(name, 'mmdet::model', f'{where}.type'))
    check_backbone(model)


def check_backbone(model):
    """Build a backbone of this plugin once and check the neck's ``in_channels`` against it.

    A bad backbone argument (``style``, ``stage_with_dcn``, a plugin position, ...) then gives its
    own message instead of mmengine's wrapped one, and a neck built for ResNet's channels
    (``[256, 512, 1024, 2048]``) in front of a ResGroup-block backbone is caught before training.

    Args:
        model (dict): The ``model`` entry of the config.

    Raises:
        ToolError: For a backbone that cannot be built or a neck that does not fit it.
    """
    from mmdet.registry import MODELS
    from iresnet_mmdet.models.backbones import BackboneConfigError, ResidualNetwork
    backbone = model.get('backbone')
    if not isinstance(backbone, dict) or not isinstance(backbone.get('type'), str):
        return
    cls = MODELS.get(backbone['type'])
    if not (isinstance(cls, type) and issubclass(cls, ResidualNetwork)):
        return
    args = {k: v for k, v in backbone.items() if k != 'type'}
    try:
        built = cls(**args)
    except (BackboneConfigError, KeyError) as exc:
        text = exc.args[0] if exc.args else exc
        raise ToolError(f'model.backbone ({backbone["type"]}): {text}') from None
    except TypeError as exc:
        raise ToolError(f'model.backbone ({backbone["type"]}): {exc}; see the Args of '
                        f'{cls.__name__} in docs/backbones.md') from None
    neck = model.get('neck')
    if isinstance(neck, (list, tuple)) and neck:
        neck = neck[0]
    in_channels = neck.get('in_channels') if isinstance(neck, dict) else None
    if not isinstance(in_channels, (list, tuple)):
        return
    outputs = [built.out_channels[i] for i in built.out_indices]
    if list(in_channels) != outputs:
        name = f'{backbone["type"]}-{built.depth}'
        raise ToolError(
            f'{name} outputs {tuple(outputs)} at out_indices {built.out_indices}, but '
            f'model.neck.in_channels is {list(in_channels)}; set model.neck.in_channels to '
            f'{outputs}')


def _plugin_models():
    try:
        from mmdet.registry import MODELS
    except ImportError:  # pragma: no cover
        return []
    return [name for name, cls in MODELS.module_dict.items()
            if cls.__module__.startswith('iresnet_mmdet')]


def unpickling_message(text):
    """Message for a checkpoint that ``torch.load(weights_only=True)`` refuses."""
    found = re.search(r'(Unsupported global: GLOBAL \S+|Trying to \S+ [^.]*)', text)
    detail = found.group(1) if found else text[:300]
    return ('the checkpoint holds objects that safe loading (torch.load weights_only=True) '
            f'refuses: {detail}. Only checkpoints of mmengine/this project are allowed; if you '
            "trust the file, re-save just its weights: torch.save({'state_dict': sd}, 'new.pth')")


# ----------------------------------------------------------------------------------------------
# Config and data checks
# ----------------------------------------------------------------------------------------------


def load_config(path, cfg_options=None):
    """Read a config file and merge ``--cfg-options``.

    Args:
        path (str): Config file.
        cfg_options (dict, optional): Overrides from the command line.

    Returns:
        mmengine.Config: The config.
    """
    from mmengine.config import Config
    if not osp.isfile(path):
        raise ToolError(f"config file '{path}' does not exist")
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as exc:
        raise ToolError(f"config file '{path}' has a syntax error: {exc}") from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except TypeError as exc:  # e.g. a dict option over a None entry of the config
            raise ToolError(f'--cfg-options cannot be merged into the config: {exc}') from None
    return cfg


def _is_remote(path):
    return isinstance(path, str) and '://' in path


def _join(root, path):
    if not root or osp.isabs(path) or _is_remote(path):
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
                if ann and not _is_remote(ann) and not osp.isfile(ann):
                    raise ToolError(f"annotation file '{ann}' of {split}_evaluator does not "
                                    'exist; set ann_file to the one of the dataset')


def _check_dataset(dataset, where):
    root = dataset.get('data_root') or ''
    if root and not _is_remote(root) and not osp.isdir(root):
        raise ToolError(
            f"data directory '{root}' ({where}.data_root) does not exist. Put the dataset there or "
            'point data_root to it (e.g. --cfg-options ...data_root=DIR); the bundled demo data '
            f'is made by: .venv/bin/python tools/data/make_synthetic_coco.py --out {root}')
    ann_file = dataset.get('ann_file')
    if not ann_file:
        return
    ann_path = _join(root, ann_file)
    if _is_remote(ann_path):
        return
    if not osp.isfile(ann_path):
        raise ToolError(f"annotation file '{ann_path}' ({where}.ann_file) does not exist")
    prefix = dataset.get('data_prefix') or {}
    img_dir = _join(root, prefix.get('img', '')) if isinstance(prefix, dict) else root
    if img_dir and not _is_remote(img_dir) and not osp.isdir(img_dir):
        raise ToolError(f"image directory '{img_dir}' ({where}.data_prefix.img) does not exist")
    if ann_path.endswith('.json') and osp.getsize(ann_path) <= FULL_CHECK_MAX_BYTES:
        coco = _load_coco(ann_path)
        _check_classes(coco, dataset, ann_path, where)
        _check_images(coco, img_dir, ann_path)


def _load_coco(path):
    from iresnet_mmdet.evaluation.coco_eval import CocoFormatError, load_gt
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


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def load_checkpoint_file(filename):
    """Load a checkpoint the way mmengine does (safe ``torch.load``), with clear errors.

    Args:
        filename (str): Local path or URL.

    Returns:
        dict: The checkpoint.
    """
    from mmengine.runner import CheckpointLoader
    if not _is_remote(filename) and not osp.isfile(filename):
        raise ToolError(f"checkpoint '{filename}' does not exist")
    try:
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location='cpu', logger='silent')
    except pickle.UnpicklingError as exc:
        raise ToolError(f"checkpoint '{filename}': "
                        + unpickling_message(' '.join(str(exc).split()))) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ToolError(f"'{filename}' is not a readable PyTorch checkpoint "
                        f"({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(ckpt, dict):
        raise ToolError(f"'{filename}' is not a checkpoint (it holds a {type(ckpt).__name__})")
    return ckpt


def check_checkpoint_fits(model, filename, ckpt=None):
    """Check that a checkpoint holds every weight of ``model`` with the same shapes.

    mmengine loads checkpoints non-strictly and only warns, so a checkpoint of another
    architecture would otherwise give a randomly initialised model and silently wrong metrics.

    Args:
        model (torch.nn.Module): The (possibly wrapped) model the runner built.
        filename (str): The checkpoint.
        ckpt (dict, optional): The checkpoint already loaded from ``filename``.

    Raises:
        ToolError: If a weight is missing or has another shape.
    """
    from mmengine.model import is_model_wrapper
    if ckpt is None:
        ckpt = load_checkpoint_file(filename)
    state = ckpt.get('state_dict', ckpt)
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    module = model.module if is_model_wrapper(model) else model
    # a test-time-augmentation model (DetTTAModel) holds the detector as `module`
    expected = {re.sub(r'^module\.', '', k): v for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in state]
    mismatched = [k for k in expected
                  if k in state and hasattr(state[k], 'shape')
                  and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not missing and not mismatched:
        return
    parts = []
    if missing:
        parts.append(f'{len(missing)} of the model\'s {len(expected)} weights are missing '
                     f'(e.g. {missing[0]})')
    if mismatched:
        k = mismatched[0]
        parts.append(f'{len(mismatched)} have another shape (e.g. {k}: checkpoint '
                     f'{list(state[k].shape)}, model {list(expected[k].shape)})')
    raise ToolError(f"checkpoint '{filename}' does not fit the model of this config: "
                    + '; '.join(parts) + '. Was it trained with another config or backbone?')
