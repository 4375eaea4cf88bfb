"""The pre-flight checks of a reproduction: each failure is one error line before anything starts.

* GPUs: a run on this node may not ask for more GPUs than PyTorch sees;
* data: the files the configs read (COCO: ``train2017/``, ``val2017/``,
  ``annotations/instances_{train,val}2017.json``), then the project's dataset checks;
* ImageNet checkpoints: every local ``Pretrained`` checkpoint the models start from;
* configs: the row's config builds the paper's backbone, every type is registered.
"""
import os.path as osp
from typing import Iterator, List, Tuple

from iresnet_mmdet.checkpoint import is_remote
from iresnet_mmdet.errors import ToolError

from .cost import innermost_dataset


def check_gpus(gpus: int) -> None:
    """A run on this node may use at most the CUDA devices PyTorch sees.

    Raises:
        ToolError: For more GPUs than visible (or none visible).
    """
    import torch
    visible = torch.cuda.device_count()
    if gpus < 1:
        raise ToolError(f'--gpus {gpus}: give the number of GPUs that train each row (1 or more)')
    if gpus > visible:
        seen = f"{visible} CUDA device{'s' if visible > 1 else ''}" if visible else \
            'no CUDA device'
        fix = f'give --gpus {visible} or fewer, ' if visible else 'run on a GPU node, '
        raise ToolError(f'--gpus {gpus}, but PyTorch sees {seen} on this node (torch '
                        f'{torch.__version__}): {fix}use --launcher slurm for a cluster, or '
                        '--smoke for the CPU smoke run')


def expected_data(cfg) -> List[Tuple[str, str]]:
    """The data the config reads: ``(path, 'folder' or 'file')``, each once, in order."""
    found = []
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        dataset = innermost_dataset(loader)
        root = dataset.get('data_root') or ''
        prefix = dataset.get('data_prefix') or {}
        if prefix.get('img'):
            found.append((osp.join(root, prefix['img']), 'folder'))
        if dataset.get('ann_file'):
            found.append((osp.join(root, dataset['ann_file']), 'file'))
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg.get(key)
        if isinstance(evaluator, dict) and evaluator.get('ann_file'):
            found.append((evaluator['ann_file'], 'file'))
    return list(dict.fromkeys(found))


def missing_data(expected: List[Tuple[str, str]]) -> List[str]:
    """The expected paths that are not there."""
    exists = {'folder': osp.isdir, 'file': osp.isfile}
    return [path for path, kind in expected if not is_remote(path) and not exists[kind](path)]


def check_data(cfg, data_root_option: bool) -> None:
    """Check that the data is there, then run the project's dataset checks on it.

    Args:
        cfg: A row's config (all rows read the same data).
        data_root_option: Whether ``--data-root`` was given (for the message).

    Raises:
        ToolError: Naming what is missing and the fix.
    """
    from iresnet_mmdet.engine.data_checks import check_data as check_datasets
    missing = missing_data(expected_data(cfg))
    if missing:
        root = innermost_dataset(cfg.train_dataloader).get('data_root') or '.'
        fix = 'give the right --data-root' if data_root_option else \
            'put COCO 2017 there or give --data-root DIR'
        raise ToolError(f"no COCO at '{root}': missing {', '.join(missing)}; {fix} "
                        "(layout: docs/ssd300.md, 'Reproducing the table')")
    check_datasets(cfg, ['train', 'val', 'test'])


def _pretrained(node, where: str) -> Iterator[Tuple[str, str]]:
    """``(checkpoint, config key)`` of every ``Pretrained`` init_cfg under a model config."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        for entry in init if isinstance(init, list) else [init]:
            if isinstance(entry, dict) and entry.get('type') == 'Pretrained' and \
                    entry.get('checkpoint'):
                yield entry['checkpoint'], f'{where}.init_cfg'
        for key, value in node.items():
            if key != 'init_cfg':
                yield from _pretrained(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _pretrained(value, f'{where}[{index}]')


def check_init_checkpoints(row_name: str, cfg) -> None:
    """Every local checkpoint a row's model starts from must exist.

    Raises:
        ToolError: Naming the file, its config key and how to get it (or do without it).
    """
    for checkpoint, where in _pretrained(cfg.model, 'model'):
        if not is_remote(checkpoint) and not osp.isfile(checkpoint):
            raise ToolError(
                f"row {row_name}: ImageNet checkpoint '{checkpoint}' ({where}) does not exist; "
                "convert the authors' file with tools/model_converters/"
                'iresnet_official_to_mmdet.py (docs/converter.md), or train from scratch with '
                '--cfg-options model.backbone.init_cfg=None')


def check_config(row_name: str, cfg, smoke: bool) -> None:
    """The config builds the row's backbone and registered types only.

    Raises:
        ToolError: For an unknown type, a backbone that cannot be built, or (not for the smoke
            run, which reduces it) a backbone that is not the row's.
    """
    from iresnet_mmdet.engine.model_checks import check_model_types
    from iresnet_mmdet.evaluation.detection_table import backbone_name
    check_model_types(cfg)
    built = backbone_name(cfg)
    if not smoke and built != row_name:
        raise ToolError(f"row {row_name}: its config builds {built} (with the --cfg-options "
                        'given?); the table compares each row with the paper\'s, so the backbone '
                        'must stay the row\'s')
