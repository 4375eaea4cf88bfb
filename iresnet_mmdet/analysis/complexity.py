"""Parameters and FLOPs of detectors, backbones and classifiers, without any dataset.

Three counting conventions, always reported with their name (the rules:
:mod:`iresnet_mmdet.analysis.counting`): ``macs`` (conv + linear multiply-accumulates, mmengine /
fvcore), ``paper`` (the 2019 thop op count of the paper's tables) and ``paper-cifar`` (the same,
every call counted: its CIFAR table).

For a detector the counted network is mmdet's ``mode='tensor'``: ``extract_feat`` + the head's
``forward``, no data preprocessing, anchors, decoding or NMS. A two-stage detector (Faster R-CNN,
Mask R-CNN) adds its RPN head and its RoI head on a fixed number of proposals, by default the
RPN's maximum (``test_cfg.rpn.max_per_img``, 1000 in mmdet's configs; the mask head on the first
100, as mmdet's ``StandardRoIHead.forward``), so no image is needed. mmdet's ``get_flops.py``
counts the same forward on data-loader images, whose RPN may keep fewer proposals. FPN detectors
default to its input convention, (3, 1280, 800). Deformable convs (mmcv's ``DCN``/``DCNv2``)
count as the conv they compute, plus their offset conv; transposed convs (the mask head's
upsampling) count ``in_elements * Cout/groups * k`` MACs, as mmengine does, and have no rule in
the paper conventions. Parameters are all parameters of the built model; ``unused_params`` reports
those of modules that the forward never called.
Models built from a config or a name are built on PyTorch's ``meta`` device (shapes only: no memory,
no arithmetic, no checkpoint or dataset needed), so even iResNet-404 counts in about a second.

Typical use::

    from iresnet_mmdet.analysis import model_complexity
    model_complexity('configs/ssd300/ssd300_iresnet50_8xb32-65e_coco.py', (3, 300, 300), 'paper')
    # -> {'params': 22894902, 'flops': 20987...e10, 'gflops': 20.987...,
    #     'unit': 'FLOPs (paper counter)', ...}
"""
import contextlib
import functools
import math
import os.path as osp
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from iresnet_mmdet import paper
from iresnet_mmdet.config import load_config
from iresnet_mmdet.models import zoo
from iresnet_mmdet.models.tensor_forward import tensor_forward
# build_from_config: also imported from here by benchmarks/detector_speed.py
from .building import build_from_config, build_target, shape_only_compiled_ops  # noqa: F401
from .counting import CONVENTIONS, check_convention, count_ops


def _paper_reference() -> Dict[str, Dict[str, tuple]]:
    """(params in M, GFLOPs) of every network in the paper's tables (:mod:`iresnet_mmdet.paper`),
    per table (the model's dataset); the values are :class:`~iresnet_mmdet.paper.Figure`."""
    reference = {
        'imagenet': paper.imagenet_complexity(),
        'ssd300': {name: (row.params, row.gflops) for name, row in paper.SSD300_COCO.items()},
    }
    for dataset, table in {**paper.CIFAR, **paper.VIDEO}.items():
        reference[dataset] = {name: (row.params, row.gflops) for name, row in table.items()}
    return reference


#: (params in M, GFLOPs as printed) of the paper's networks, per table: ``'imagenet'``,
#: ``'ssd300'``, ``'cifar10'``, ``'cifar100'``, ``'kinetics400'``, ``'ssv2'``.
PAPER_REFERENCE = _paper_reference()
#: mmdet's input for the complexity of FPN detectors, (C, H, W): ``get_flops.py --shape 1280 800``.
DETECTOR_INPUT = (3, 1280, 800)
# Inputs of at most this many pixels (H * W) are counted on the CPU (see _count_target).
_TINY_INPUT = 64 * 64
#: Proposals of a two-stage detector whose config has no ``test_cfg.rpn.max_per_img``.
DEFAULT_PROPOSALS = 1000
_DETECTOR_LABELS = {'FasterRCNN': 'Faster R-CNN', 'MaskRCNN': 'Mask R-CNN', 'CascadeRCNN':
                    'Cascade R-CNN', 'RetinaNet': 'RetinaNet', 'FCOS': 'FCOS',
                    'SingleStageDetector': 'SSD'}
#: The convention of each table's printed GFLOPs (``'paper'`` where not listed).
TABLE_CONVENTION = {'cifar10': 'paper-cifar', 'cifar100': 'paper-cifar'}


def _check_shape(input_shape) -> Tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f'input_shape must be (C, H, W), or (C, T, H, W) for a video network, '
                         f'with positive sizes, got {input_shape!r}; e.g. (3, 300, 300).')
    return shape


def _fake_proposals(x: torch.Tensor, num: int):
    """``num`` valid boxes of growing size (they reach every FPN level of an RoI extractor)."""
    from mmengine.structures import InstanceData
    if x.device.type == 'meta':
        return InstanceData(bboxes=torch.empty(num, 4, device='meta'))
    sides = torch.linspace(8, min(x.shape[-2:]), num, device=x.device)
    zeros = torch.zeros_like(sides)
    return InstanceData(bboxes=torch.stack([zeros, zeros, sides, sides], dim=1))


def proposal_count(model: nn.Module, num_proposals: Optional[int] = None) -> int:
    """Proposals a two-stage detector's RoI head is counted on: ``num_proposals``, else the RPN's
    maximum (``test_cfg.rpn.max_per_img``, 1000 in mmdet's configs)."""
    if num_proposals is not None:
        return num_proposals
    rpn_cfg = (getattr(model, 'test_cfg', None) or {}).get('rpn', None) or {}
    return int(rpn_cfg.get('max_per_img', DEFAULT_PROPOSALS))


def _network_forward(model: nn.Module,
                     num_proposals: Optional[int] = None) -> Callable[[torch.Tensor], object]:
    """The forward to count: :func:`~iresnet_mmdet.models.tensor_forward.tensor_forward`.

    Detectors run without post-processing; a two-stage detector's RoI head runs on
    :func:`proposal_count` fixed proposals instead of those the RPN selects from an image: the
    count does not depend on data (selecting proposals has no MACs).
    """
    num = proposal_count(model, num_proposals)
    return functools.partial(tensor_forward, model,
                             proposals=lambda x: [_fake_proposals(x, num) for _ in range(len(x))])


def _count_target(target, input_shape: Optional[Sequence[int]], conventions: Sequence[str],
                  num_classes: Optional[int] = None, num_proposals: Optional[int] = None
                  ) -> Tuple[nn.Module, Tuple[int, ...], dict]:
    """Build (if needed) and count ``target``: (model, input shape, :func:`count_ops` result).

    A model built here is built on the ``meta`` device: only shapes matter to both conventions, so
    no memory is allocated and nothing is computed. A network that needs real values in its
    forward, or whose input is tiny (CIFAR's 32x32: there each meta op's Python bookkeeping costs
    more than the real op), is rebuilt on the CPU. A given module is counted where it is.
    """
    devices = (None, ) if isinstance(target, nn.Module) else ('meta', 'cpu')
    known = input_shape or _named_input(target)
    if known and devices[0] == 'meta' and math.prod(known[-2:]) <= _TINY_INPUT:
        devices = ('cpu', )
    if isinstance(target, str) and target.endswith('.py'):
        target = load_config(target)  # once: reading resolves every base
    for device in devices:
        model = build_target(target, device, num_classes)
        shape = _check_shape(input_shape) if input_shape else _default_shape(target, model)
        if device == 'meta' and math.prod(shape[-2:]) <= _TINY_INPUT:
            continue
        param = next(model.parameters(), None)
        x = torch.rand(1, *shape, device=param.device if param is not None else (device or 'cpu'))
        on_meta = x.device.type == 'meta'
        try:
            with shape_only_compiled_ops(model) if on_meta else contextlib.nullcontext():
                counts = count_ops(model, _network_forward(model, num_proposals), x, conventions)
            return model, shape, counts
        except (NotImplementedError, RuntimeError):
            if device != 'meta':
                raise
    raise AssertionError('unreachable')


def model_complexity(cfg_or_model: Union[str, dict, nn.Module],
                     input_shape: Sequence[int] = (3, 300, 300),
                     convention: str = 'paper',
                     num_proposals: Optional[int] = None) -> dict:
    """Parameters and FLOPs of a model for one input of ``input_shape``.

    Args:
        cfg_or_model (str | Config | dict | nn.Module): A config file, a (model) config dict, an
            architecture name for the ImageNet form (``'iresnet50'``), or a built module. Detectors
            are counted without post-processing (see :func:`_network_forward`).
        input_shape (Sequence[int]): (C, H, W) of the single input image, or (C, T, H, W) of a
            clip. Defaults to (3, 300, 300).
        convention (str): ``'paper'`` (thop-2019 op count used by the paper), ``'paper-cifar'``
            (the same, every call counted: the paper's CIFAR table) or ``'macs'`` (conv + linear
            multiply-accumulates, mmengine/fvcore). Defaults to ``'paper'``.
        num_proposals (int, optional): Proposals of a two-stage detector's RoI head; defaults to
            the RPN's ``test_cfg.rpn.max_per_img`` (see :func:`proposal_count`).

    Returns:
        dict: ``params`` (int, all parameters), ``flops`` (float, the total *in the chosen
        convention*: paper ops or MACs), ``gflops`` (``flops / 1e9``), ``convention``, ``unit``
        (what ``flops`` counts), ``description``, ``input_shape``, ``by_type`` (per leaf type),
        ``uncounted`` (leaf types with no rule, counted as 0), ``unused_params`` (parameters of
        modules the forward never called).
    """
    check_convention(convention)
    _check_shape(input_shape)
    model, shape, counts = _count_target(cfg_or_model, input_shape, (convention, ),
                                         num_proposals=num_proposals)
    params = sum(p.numel() for p in model.parameters())
    res = counts[convention]
    unit, description = CONVENTIONS[convention]
    return dict(
        params=params,
        flops=float(res['total']),
        gflops=res['total'] / 1e9,
        convention=convention,
        unit=unit,
        description=description,
        input_shape=shape,
        by_type=res['by_type'],
        uncounted=res['uncounted'],
        unused_params=counts['_unused_params'])


def display_name(target, model: Optional[nn.Module] = None) -> str:
    """The paper's name of a target's backbone, e.g. ``'iResGroupFix-50'``.

    Args:
        target: What was passed to :func:`model_complexity` (config path, name, dict, module).
        model (nn.Module, optional): The built model, used to read the backbone type and depth.

    Returns:
        str: ``'<Type>-<depth>'`` when known, otherwise a short description of ``target``.
    """
    backbone = getattr(model, 'backbone', model)
    depth = getattr(backbone, 'depth', None)
    # The first known class in the MRO: classifiers subclass their backbone ('iResNetClassifier').
    for cls in type(backbone).__mro__:
        if zoo.family_of_type(cls.__name__) and depth is not None:
            return zoo.paper_name(cls.__name__, depth)
    if isinstance(target, str):
        name = osp.splitext(osp.basename(target))[0]
        try:
            family, depth = zoo.parse_arch(name)
        except KeyError:
            return name
        return family.name(depth)
    return type(model).__name__


def detector_label(model: nn.Module) -> Optional[str]:
    """The detector's usual name (``'Faster R-CNN'``), its class name if unknown, None if the model
    is not an mmdet detector."""
    from mmdet.models.detectors import BaseDetector
    if not isinstance(model, BaseDetector):
        return None
    name = type(model).__name__
    return _DETECTOR_LABELS.get(name, name)


def _is_ssd(model: nn.Module) -> bool:
    from mmdet.models.dense_heads import SSDHead
    return isinstance(getattr(model, 'bbox_head', None), SSDHead)


def _task_of(model: nn.Module) -> str:
    """The paper's table a model belongs to (its dataset): ``'ssd300'`` for SSD detectors,
    ``'detector'`` for other detectors, ``'backbone'`` for a network without a classifier."""
    if detector_label(model) is not None:
        return 'ssd300' if _is_ssd(model) else 'detector'
    fc = getattr(model, 'fc', None)
    if not isinstance(fc, nn.Linear):
        return 'backbone'
    setting = getattr(model, 'setting', 'imagenet')
    if setting == 'cifar':
        return {10: 'cifar10', 100: 'cifar100'}.get(fc.out_features, 'cifar')
    if setting == 'video':
        return {400: 'kinetics400', 174: 'ssv2'}.get(fc.out_features, 'video')
    return 'imagenet'


def _named_input(target) -> Optional[Tuple[int, ...]]:
    """The input of a CIFAR architecture name (known before building), else None."""
    try:
        family, _ = zoo.parse_arch(target) if isinstance(target, str) else (None, None)
    except KeyError:
        return None
    return zoo.SETTING_INPUT['cifar'] if family and family.setting == 'cifar' else None


def _default_shape(target, model: nn.Module) -> Tuple[int, ...]:
    task = _task_of(model)
    if task.startswith('cifar'):
        return zoo.SETTING_INPUT['cifar']
    if getattr(model, 'setting', None) == 'video':
        return zoo.SETTING_INPUT['video']
    if task == 'imagenet':
        return zoo.SETTING_INPUT['imagenet']
    if task == 'detector':
        return DETECTOR_INPUT
    size = target.get('input_size', 300) if hasattr(target, 'get') else 300
    return (3, size, size)


def complexity_rows(targets: Iterable, input_shape: Optional[Sequence[int]] = None,
                    num_classes: Optional[int] = None,
                    num_proposals: Optional[int] = None) -> List[dict]:
    """Every convention for several targets (one forward each).

    Args:
        targets (Iterable): Config paths, architecture names, config dicts or modules.
        input_shape (Sequence[int], optional): (C, H, W) or (C, T, H, W) for every target.
            Defaults to the config's ``input_size`` (300) for SSD detectors, :data:`DETECTOR_INPUT`
            (1280x800, mmdet's ``get_flops`` convention) for other detectors, 224 for ImageNet
            classifiers, 32 for CIFAR and 16x224x224 for video networks.
        num_classes (int, optional): Classes of the classifiers built from architecture names;
            defaults to their dataset's (1000, CIFAR 10, video 400).
        num_proposals (int, optional): Proposals of two-stage detectors (:func:`proposal_count`).

    Returns:
        list[dict]: One dict per target with ``name``, ``target``, ``task``, ``detector`` (see
        :func:`detector_label`), ``dcn`` (whether the backbone has deformable convs),
        ``input_shape``, ``params``, ``paper_flops``, ``paper_cifar_flops``, ``macs``,
        ``ref_params_m`` and ``ref_gflops`` (the paper's printed values, see
        :data:`PAPER_REFERENCE`, or None), ``ref_convention`` (the convention of ``ref_gflops``,
        see :data:`TABLE_CONVENTION`), ``unused_params``, ``uncounted`` (leaf types without a rule
        in any convention) and ``uncounted_by_convention`` (per convention; see :func:`count_ops`).
    """
    rows = []
    for target in targets:
        model, shape, counts = _count_target(target, input_shape, tuple(CONVENTIONS), num_classes,
                                             num_proposals)
        name, task = display_name(target, model), _task_of(model)
        ref = PAPER_REFERENCE.get(task, {}).get(name, (None, None))
        rows.append(
            dict(
                name=name, target=target if isinstance(target, str) else name, task=task,
                detector=detector_label(model),
                dcn=bool(getattr(getattr(model, 'backbone', None), 'dcn', None)),
                input_shape=shape, params=sum(p.numel() for p in model.parameters()),
                paper_flops=counts['paper']['total'],
                paper_cifar_flops=counts['paper-cifar']['total'], macs=counts['macs']['total'],
                ref_params_m=ref[0], ref_gflops=ref[1],
                ref_convention=TABLE_CONVENTION.get(task, 'paper'),
                unused_params=counts['_unused_params'],
                uncounted=sorted(set(counts['paper']['uncounted'] + counts['macs']['uncounted'])),
                uncounted_by_convention={c: counts[c]['uncounted'] for c in CONVENTIONS}))
        del model
    return rows
