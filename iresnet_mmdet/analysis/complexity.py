"""Parameters and FLOPs of detectors, backbones and classifiers, without any dataset.

Three counting conventions, always reported with their name, because "FLOPs" means different things
in different tools (mmdet's ``get_flops.py`` and mmengine print multiply-accumulates under the name
"flops"; one MAC is about two floating-point operations):

``macs``
    Multiply-accumulates of convolution and linear layers only (bias, norm, activation and pooling
    count 0); a module called twice counts twice. This is the mmengine / fvcore convention:
    ``mmengine.analysis.FlopAnalyzer`` gives the same number for its ``conv`` + ``linear``/``addmm``
    operators. Reported as "GMACs".

``paper``
    The operation count of the counter the iResNet paper used, thop (pytorch-OpCounter) 0.0.23 as of
    June to mid-July 2019 (ARCHITECTURE_NOTES.md section 3). It reproduces every FLOP value of the
    paper's tables to the printed two decimals. Reported as "GFLOPs (paper counter)". Per leaf
    module:

    * Conv: ``out_elements * Cin/groups * (k_h*k_w + 1 if bias else k_h*k_w)``: MACs, plus a quirk
      that charges ``Cin/groups`` (not 1) per output element for a bias;
    * BatchNorm: 4 per input element; ReLU / ReLU6 / LeakyReLU: 1 per input element;
    * MaxPool: ``kernel_size * out_elements`` with the *integer* kernel size (3, not 9, for a
      ``MaxPool2d(3)``: thop took ``prod([kernel_size])``); AvgPool: (that + 1) per output element;
    * AdaptiveAvgPool: ``(prod(in_size // out_size) + 1) * out_elements``;
      AdaptiveMaxPool: ``prod(in_size // out_size) * out_elements``;
    * Linear: ``(2 * in_features - 1) * out_elements``;
    * Dropout / Identity: 0; any other leaf type: 0, listed in the result's ``uncounted``.

    **Only the last call of each module counts**: thop *assigned* ``module.total_ops`` in its
    forward hook instead of adding to it. The authors' blocks own one ``self.relu`` that is called
    at every activation point of the block, so a block's ReLU cost is the size of its *last*
    activation, and the total depends on where ReLUs are applied and which module instance is
    reused, not only on the layer shapes. Backbones must therefore mirror the authors' module
    structure (one ReLU module per block, one for the stem) for this convention to be meaningful.
    Example: in a ResNet bottleneck the last ReLU call is the post-addition one (4x-wide output),
    in an iResNet middle block it is the one after ``bn2`` (narrow), so equal shapes can give
    different totals.

    thop matched modules by exact type; here rules apply to subclasses too (``isinstance``), so
    wrappers such as a custom ``ReLU`` subclass are counted like their base class. The rules apply
    unchanged in 3D (the video table): a ``MaxPool3d((3, 3, 3))`` costs 27 per output element,
    only a bare int kernel keeps the quirk above.

``paper-cifar``
    The counter of the paper's CIFAR table (ResNet / iResNet 164 ... 3002 layers): the ``paper``
    rules, but **every call of a module counts** (later thop versions add to ``total_ops``), so a
    block's shared ReLU costs the size of each of its applications. Only the ReLUs differ from
    ``paper`` in these networks (no other module is called twice). Reported as "GFLOPs (paper
    CIFAR counter)".

For a detector the counted network is ``extract_feat`` + the head's ``forward`` (mmdet's
``mode='tensor'``): no data preprocessing, anchors, decoding or NMS. Parameters are all parameters
of the built model; ``unused_params`` reports those of modules that the forward never called.
Models built from a config or a name are built on PyTorch's ``meta`` device (shapes only: no memory,
no arithmetic, no checkpoint or dataset needed), so even iResNet-404 counts in about a second.

Typical use::

    from iresnet_mmdet.analysis import model_complexity
    model_complexity('configs/ssd300/ssd300_iresnet50_8xb32-65e_coco.py', (3, 300, 300), 'paper')
    # -> {'params': 22894902, 'flops': 20987...e10, 'gflops': 20.987...,
    #     'unit': 'FLOPs (paper counter)', ...}
"""
import contextlib
import math
import os.path as osp
from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.pooling import (_AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _AvgPoolNd,
                                      _MaxPoolNd)

CONVENTIONS = {
    'paper': ('FLOPs (paper counter)',
              'thop-0.0.23 (mid-2019) op count used by the paper: conv MACs (+Cin/g per output '
              'element if biased), BN 4/elem, ReLU 1/elem, MaxPool k*out, AdaptiveAvgPool '
              '(k^2+1)*out, Linear (2in-1)*out; last call of each module only'),
    'paper-cifar': ('FLOPs (paper CIFAR counter)',
                    'the paper rules with every call of a module counted (each ReLU application), '
                    'the counter of the paper\'s CIFAR table'),
    'macs': ('MACs (conv+linear)',
             'multiply-accumulates of conv and linear layers, every call counted '
             '(mmengine/fvcore "flops"; 1 MAC ~ 2 FLOPs)'),
}

# (params in M, GFLOPs in the paper convention) as printed in the paper; None where it has none.
PAPER_REFERENCE = {
    'imagenet': {
        'ResNet-50': (25.56, 4.14), 'iResNet-50': (25.56, 4.18), 'ResGroup-50': (24.89, 5.43),
        'ResGroupFix-50': (23.37, 4.30), 'iResGroup-50': (24.89, 5.60),
        'iResGroupFix-50': (23.37, 4.47), 'ResNet-101': (44.55, None),
        'ResGroup-101': (47.81, None), 'ResGroupFix-101': (43.79, None),
        'ResNet-152': (60.19, None), 'ResGroup-152': (66.99, None),
        'ResGroupFix-152': (60.61, None), 'iResNet-302': (96.59, 22.67),
        'iResNet-404': (124.5, 30.15),
    },
    'ssd300': {
        'ResNet-50': (22.89, 20.92), 'iResNet-50': (22.89, 20.99),
        'iResGroupFix-50': (21.13, 18.61), 'iResGroup-50': (22.66, 21.62),
        'ResNet-101': (41.89, 48.45), 'iResNet-101': (41.89, 48.49),
        'iResGroupFix-101': (41.55, 48.25), 'iResGroup-101': (45.58, 54.87),
    },
    # CIFAR (32x32): GFLOPs in the 'paper-cifar' convention (TABLE_CONVENTION).
    'cifar10': {
        f'{name}-{depth}': ref for depth, ref in {
            164: (1.70, 0.26), 1001: (10.33, 1.59), 2000: (20.62, 3.17), 3002: (30.93, 4.75)
        }.items() for name in ('ResNet', 'iResNet')
    },
    'cifar100': {
        f'{name}-{depth}': ref for depth, ref in {
            164: (1.73, 0.26), 1001: (10.35, 1.59), 2000: (20.65, 3.17), 3002: (30.96, 4.75)
        }.items() for name in ('ResNet', 'iResNet')
    },
    # Video clips of 16x224x224 (the paper's "baseline3D-50" is ResNet3D-50).
    'kinetics400': {'ResNet3D-50': (47.00, 93.26), 'iResNet3D-50': (47.00, 93.93)},
    'ssv2': {'ResNet3D-50': (46.54, None), 'iResNet3D-50': (46.54, None)},
}
#: The convention of each table's printed GFLOPs (``'paper'`` where not listed).
TABLE_CONVENTION = {'cifar10': 'paper-cifar', 'cifar100': 'paper-cifar'}
_TASK_LABELS = dict(ssd300='SSD300', imagenet='ImageNet', cifar10='CIFAR-10', cifar100='CIFAR-100',
                    kinetics400='Kinetics-400', ssv2='SSv2', video='Video', cifar='CIFAR')

# Backbone registry type -> display name (the paper's spelling); arch prefix -> display name.
_DISPLAY = {
    'resnet': 'ResNet', 'iresnet': 'iResNet', 'resstage': 'ResStage', 'resgroup': 'ResGroup',
    'resgroupfix': 'ResGroupFix', 'iresgroup': 'iResGroup', 'iresgroupfix': 'iResGroupFix',
    'preactresnet': 'PreActResNet', 'resnetcifar': 'ResNet', 'iresnetcifar': 'iResNet',
    'resnet3d': 'ResNet3D', 'iresnet3d': 'iResNet3D',
}

_ZERO_COST = (nn.Dropout, nn.Identity)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)
# Leaf types that hold no multiply-accumulates of conv/linear kind (0 in the 'macs' convention).
_MACS_FREE = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, _MaxPoolNd, _AvgPoolNd, _AdaptiveAvgPoolNd,
              _AdaptiveMaxPoolNd, nn.Upsample) + _ACTIVATIONS + _ZERO_COST


def _thop_kernel(kernel_size) -> int:
    """``prod([kernel_size])`` as thop computed it: an int kernel stays k (not k*k)."""
    return kernel_size if isinstance(kernel_size, int) else math.prod(kernel_size)


def _adaptive_kernel(x: torch.Tensor, y: torch.Tensor) -> int:
    return math.prod(i // o for i, o in zip(x.shape[2:], y.shape[2:]))


def _paper_ops(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Optional[int]:
    """Ops of one call of leaf module ``m`` under the paper's (thop 2019) rules, None if unknown."""
    if isinstance(m, _ConvNd) and not isinstance(m, _ConvTransposeNd):
        per_elem = math.prod(m.kernel_size) + (1 if m.bias is not None else 0)
        return y.numel() * per_elem * m.in_channels // m.groups
    if isinstance(m, _BatchNorm):
        return 4 * x.numel()
    if isinstance(m, _ACTIVATIONS):
        return x.numel()
    if isinstance(m, _MaxPoolNd):
        return _thop_kernel(m.kernel_size) * y.numel()
    if isinstance(m, _AvgPoolNd):
        return (_thop_kernel(m.kernel_size) + 1) * y.numel()
    if isinstance(m, _AdaptiveAvgPoolNd):
        return (_adaptive_kernel(x, y) + 1) * y.numel()
    if isinstance(m, _AdaptiveMaxPoolNd):
        return _adaptive_kernel(x, y) * y.numel()
    if isinstance(m, nn.Linear):
        return (2 * m.in_features - 1) * y.numel()
    if isinstance(m, _ZERO_COST):
        return 0
    return None


def _macs(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Optional[int]:
    """Multiply-accumulates of one call of leaf module ``m`` (conv and linear only)."""
    if isinstance(m, _ConvNd) and not isinstance(m, _ConvTransposeNd):
        return y.numel() * m.in_channels // m.groups * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return y.numel() * m.in_features
    if isinstance(m, _MACS_FREE):
        return 0
    return None


# rule, accumulate over calls
_RULES = {'paper': (_paper_ops, False), 'paper-cifar': (_paper_ops, True), 'macs': (_macs, True)}


def _first_tensor(obj) -> Optional[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for item in obj:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def count_ops(model: nn.Module,
              forward: Callable[[torch.Tensor], object],
              inputs: torch.Tensor,
              conventions: Sequence[str] = ('paper', 'macs')) -> Dict[str, dict]:
    """Run ``forward(inputs)`` once with hooks on every leaf module and count operations.

    Args:
        model (nn.Module): The module whose leaves are hooked.
        forward (callable): Called as ``forward(inputs)``; runs the network to count.
        inputs (Tensor): The input batch (batch size 1 for per-image numbers).
        conventions (Sequence[str]): Names from :data:`CONVENTIONS`.

    Returns:
        dict: Per convention, ``dict(total=int, by_type={type name: int}, uncounted=[type names])``,
        plus the key ``'_unused_params'`` (int): parameters of leaf modules never called.
    """
    for conv in conventions:
        _check_convention(conv)
    per_module = {c: {} for c in conventions}
    unknown = {c: set() for c in conventions}
    called = set()

    def hook(module, args, output):
        x, y = _first_tensor(args), _first_tensor(output)
        called.add(module)
        if x is None or y is None:
            return
        for conv in conventions:
            rule, accumulate = _RULES[conv]
            ops = rule(module, x, y)
            if ops is None:
                unknown[conv].add(type(module).__name__)
                continue
            # paper: thop assigned (last call wins); paper-cifar, macs: every call adds.
            prev = per_module[conv].get(module, 0) if accumulate else 0
            per_module[conv][module] = prev + ops

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            forward(inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    results = {}
    for conv in conventions:
        by_type = defaultdict(int)
        for module, ops in per_module[conv].items():
            by_type[type(module).__name__] += ops
        results[conv] = dict(
            total=sum(by_type.values()), by_type=dict(by_type), uncounted=sorted(unknown[conv]))
    results['_unused_params'] = sum(
        p.numel() for m in leaves if m not in called for p in m.parameters(recurse=False))
    return results


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f'Unknown FLOPs convention {convention!r}: use one of '
                         f'{sorted(CONVENTIONS)} (see iresnet_mmdet.analysis.complexity).')


def _check_shape(input_shape) -> Tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f'input_shape must be (C, H, W), or (C, T, H, W) for a video network, '
                         f'with positive sizes, got {input_shape!r}; e.g. (3, 300, 300).')
    return shape


def _import_plugins(cfg) -> None:
    import iresnet_mmdet  # noqa: F401  (registers the plugin modules)
    from mmengine.utils import import_modules_from_strings
    custom = cfg.get('custom_imports', None)
    if custom:
        import_modules_from_strings(**custom)


def build_from_config(cfg) -> nn.Module:
    """Build the ``model`` of an mmdet config (path, Config or dict) without data or weights.

    Args:
        cfg (str | Config | dict): A config file path, a full config (with ``model``), or a model
            config dict (with ``type``; any type registered in ``mmdet.registry.MODELS``).

    Returns:
        nn.Module: The built model; pretrained weights are not loaded (``init_weights`` is not
        called), so no checkpoint or dataset is needed.
    """
    from mmengine.config import Config, ConfigDict
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    if isinstance(cfg, str):
        if not osp.isfile(cfg):
            raise FileNotFoundError(f'Config file {cfg!r} not found; pass an existing .py config '
                                    'or an architecture name such as "iresnet50".')
        cfg = Config.fromfile(cfg)
    if not isinstance(cfg, (dict, Config, ConfigDict)):
        raise TypeError(f'Expected a config path, Config, dict or nn.Module, got {type(cfg)}.')
    _import_plugins(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = cfg['model'] if 'model' in cfg else cfg
    if 'type' not in model_cfg:
        raise ValueError('The config has neither a `model` entry nor a `type` key; pass a full '
                         'mmdet config or a model config dict such as dict(type="iResNet", ...).')
    return MODELS.build(model_cfg)


def build_named(arch: str, num_classes: Optional[int] = None) -> nn.Module:
    """Build the classification form of an architecture name (e.g. ``'iresnet50'``).

    Args:
        arch (str): A name accepted by ``iresnet_mmdet.models.classifier.build_classifier``.
        num_classes (int, optional): Classifier outputs. Defaults to the architecture's dataset:
            1000 (ImageNet), 10 (CIFAR, ``'cifar_iresnet164'``), 400 (video, ``'iresnet3d50'``).

    Returns:
        nn.Module: backbone + global average pool + fc, as released by the authors.
    """
    try:
        from iresnet_mmdet.models.classifier import build_classifier
    except ImportError as err:
        raise ImportError('Architecture names need iresnet_mmdet.models.classifier.build_classifier'
                          f' ({err}); pass a config file or an nn.Module instead.') from err
    return build_classifier(arch, num_classes=num_classes)


def _network_forward(model: nn.Module) -> Callable[[torch.Tensor], object]:
    """The forward to count: mmdet detectors without post-processing, others as they are."""
    from mmdet.models.detectors import BaseDetector
    if isinstance(model, BaseDetector):
        return lambda x: model(x, None, mode='tensor')
    return model


def _resolve(target, device: Optional[str] = None,
             num_classes: Optional[int] = None) -> nn.Module:
    """Build ``target`` (on ``device``, e.g. ``'meta'``) unless it is already a module."""
    if isinstance(target, nn.Module):
        return target
    with torch.device(device) if device else contextlib.nullcontext():
        if isinstance(target, str) and not target.endswith('.py') and not osp.exists(target):
            return build_named(target, num_classes)
        return build_from_config(target)


def _count_target(target, input_shape: Optional[Sequence[int]], conventions: Sequence[str],
                  num_classes: Optional[int] = None) -> Tuple[nn.Module, Tuple[int, ...], dict]:
    """Build (if needed) and count ``target``: (model, input shape, :func:`count_ops` result).

    A model built here is built on the ``meta`` device: only shapes matter to both conventions, so
    no memory is allocated and nothing is computed. A network that needs real values in its
    forward is rebuilt on the CPU. A given module is counted where it is.
    """
    devices = (None, ) if isinstance(target, nn.Module) else ('meta', 'cpu')
    for device in devices:
        model = _resolve(target, device, num_classes)
        shape = _check_shape(input_shape) if input_shape else _default_shape(target, model)
        param = next(model.parameters(), None)
        x = torch.rand(1, *shape, device=param.device if param is not None else (device or 'cpu'))
        try:
            return model, shape, count_ops(model, _network_forward(model), x, conventions)
        except (NotImplementedError, RuntimeError):
            if device != 'meta':
                raise
    raise AssertionError('unreachable')


def model_complexity(cfg_or_model: Union[str, dict, nn.Module],
                     input_shape: Sequence[int] = (3, 300, 300),
                     convention: str = 'paper') -> dict:
    """Parameters and FLOPs of a model for one input of ``input_shape``.

    Args:
        cfg_or_model (str | Config | dict | nn.Module): A config file, a (model) config dict, an
            architecture name for the ImageNet form (``'iresnet50'``), or a built module. Detectors
            are counted as ``extract_feat`` + head forward (no post-processing).
        input_shape (Sequence[int]): (C, H, W) of the single input image, or (C, T, H, W) of a
            clip. Defaults to (3, 300, 300).
        convention (str): ``'paper'`` (thop-2019 op count used by the paper), ``'paper-cifar'``
            (the same, every call counted: the paper's CIFAR table) or ``'macs'`` (conv + linear
            multiply-accumulates, mmengine/fvcore). Defaults to ``'paper'``.

    Returns:
        dict: ``params`` (int, all parameters), ``flops`` (float, the total *in the chosen
        convention*: paper ops or MACs), ``gflops`` (``flops / 1e9``), ``convention``, ``unit``
        (what ``flops`` counts), ``description``, ``input_shape``, ``by_type`` (per leaf type),
        ``uncounted`` (leaf types with no rule, counted as 0), ``unused_params`` (parameters of
        modules the forward never called).
    """
    _check_convention(convention)
    _check_shape(input_shape)
    model, shape, counts = _count_target(cfg_or_model, input_shape, (convention, ))
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
        if cls.__name__.lower() in _DISPLAY and depth is not None:
            return f'{_DISPLAY[cls.__name__.lower()]}-{depth}'
    if isinstance(target, str):
        name = osp.splitext(osp.basename(target))[0]
        stem = name.rstrip('0123456789')
        if stem in _DISPLAY and stem != name:
            return f'{_DISPLAY[stem]}-{name[len(stem):]}'
        return name
    return type(model).__name__


def _task_of(model: nn.Module) -> str:
    """The paper's table a model belongs to (its dataset), ``'backbone'`` without a classifier."""
    if hasattr(model, 'bbox_head'):
        return 'ssd300'
    fc = getattr(model, 'fc', None)
    if not isinstance(fc, nn.Linear):
        return 'backbone'
    setting = getattr(model, 'setting', 'imagenet')
    if setting == 'cifar':
        return {10: 'cifar10', 100: 'cifar100'}.get(fc.out_features, 'cifar')
    if setting == 'video':
        return {400: 'kinetics400', 174: 'ssv2'}.get(fc.out_features, 'video')
    return 'imagenet'


def _default_shape(target, model: nn.Module) -> Tuple[int, ...]:
    task = _task_of(model)
    if task.startswith('cifar'):
        return (3, 32, 32)
    if getattr(model, 'setting', None) == 'video':
        return (3, 16, 224, 224)
    if task == 'imagenet':
        return (3, 224, 224)
    size = 300
    if isinstance(target, str) and target.endswith('.py'):
        from mmengine.config import Config
        size = Config.fromfile(target).get('input_size', 300)
    return (3, size, size)


def complexity_rows(targets: Iterable, input_shape: Optional[Sequence[int]] = None,
                    num_classes: Optional[int] = None) -> List[dict]:
    """Every convention for several targets (one forward each).

    Args:
        targets (Iterable): Config paths, architecture names, config dicts or modules.
        input_shape (Sequence[int], optional): (C, H, W) or (C, T, H, W) for every target.
            Defaults to the config's ``input_size`` (300) for detectors, 224 for ImageNet
            classifiers, 32 for CIFAR and 16x224x224 for video networks.
        num_classes (int, optional): Classes of the classifiers built from architecture names;
            defaults to their dataset's (1000, CIFAR 10, video 400).

    Returns:
        list[dict]: One dict per target with ``name``, ``target``, ``task``, ``input_shape``,
        ``params``, ``paper_flops``, ``paper_cifar_flops``, ``macs``, ``ref_params_m`` and
        ``ref_gflops`` (paper's printed values or None), ``ref_convention`` (the convention of
        ``ref_gflops``, see :data:`TABLE_CONVENTION`), ``unused_params`` and ``uncounted`` (see
        :func:`count_ops`).
    """
    rows = []
    for target in targets:
        model, shape, counts = _count_target(target, input_shape, tuple(_RULES), num_classes)
        name, task = display_name(target, model), _task_of(model)
        ref = PAPER_REFERENCE.get(task, {}).get(name, (None, None))
        rows.append(
            dict(
                name=name, target=target if isinstance(target, str) else name, task=task,
                input_shape=shape, params=sum(p.numel() for p in model.parameters()),
                paper_flops=counts['paper']['total'],
                paper_cifar_flops=counts['paper-cifar']['total'], macs=counts['macs']['total'],
                ref_params_m=ref[0], ref_gflops=ref[1],
                ref_convention=TABLE_CONVENTION.get(task, 'paper'),
                unused_params=counts['_unused_params'],
                uncounted=sorted(set(counts['paper']['uncounted'] + counts['macs']['uncounted']))))
        del model
    return rows


def _fmt_ref(value: Optional[float]) -> str:
    """A paper value as printed (124.5 has one decimal in the paper, the others two)."""
    if value is None:
        return '-'
    return f'{value:.1f}' if value >= 100 else f'{value:.2f}'


def markdown_table(rows: Sequence[dict]) -> str:
    """Format :func:`complexity_rows` output as a markdown table with the paper's columns.

    Args:
        rows (Sequence[dict]): Output of :func:`complexity_rows`.

    Returns:
        str: The table; "GFLOPs" is the paper's counter, "GMACs" conv+linear multiply-accumulates.
        With rows of a table printed in the ``paper-cifar`` convention (CIFAR), a column "GFLOPs
        (paper CIFAR counter)" follows the paper counter's, and "Paper: GFLOPs" of those rows is
        in that convention.
    """
    cifar = any(r.get('ref_convention') == 'paper-cifar' for r in rows)
    cifar_head = '| GFLOPs (paper CIFAR counter) ' if cifar else ''
    lines = [
        f'| Model | Input | Params (M) | GFLOPs (paper counter) {cifar_head}| GMACs (conv+linear) '
        '| Paper: Params (M) | Paper: GFLOPs | Config / arch |',
        '|---|---|---|---|---|---|---|---|' + ('---|' if cifar else ''),
    ]
    for r in rows:
        task = _TASK_LABELS.get(r['task'], 'Backbone')
        source = osp.basename(r['target']) if r['target'].endswith('.py') else r['target']
        cifar_cell = f"| {r['paper_cifar_flops'] / 1e9:.2f} " if cifar else ''
        lines.append(
            f"| {task} {r['name']} | {'x'.join(map(str, r['input_shape'][1:]))} "
            f"| {r['params'] / 1e6:.2f} | {r['paper_flops'] / 1e9:.2f} {cifar_cell}"
            f"| {r['macs'] / 1e9:.2f} | {_fmt_ref(r['ref_params_m'])} "
            f"| {_fmt_ref(r['ref_gflops'])} | `{source}` |")
    return '\n'.join(lines)
