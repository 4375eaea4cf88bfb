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
    June to mid-July 2019 (docs/complexity.md). It reproduces every FLOP value of the
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
import types
import os.path as osp
from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.pooling import (_AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _AvgPoolNd,
                                      _MaxPoolNd)

from iresnet_mmdet import paper
from iresnet_mmdet.config import load_config

CONVENTIONS = {
    'paper': ('FLOPs (paper counter)',
              'thop-0.0.23 (mid-2019) op count used by the paper: conv MACs (+Cin/g per output '
              'element if biased), BN 4/elem, ReLU 1/elem, MaxPool k*out, AdaptiveAvgPool '
              '(k^2+1)*out, Linear (2in-1)*out; last call of each module only'),
    'paper-cifar': ('FLOPs (paper CIFAR counter)',
                    'the paper rules with every call of a module counted (each ReLU application), '
                    'the counter of the paper\'s CIFAR table'),
    'macs': ('MACs (conv+linear)',
             'multiply-accumulates of conv (deformable, transposed too) and linear layers, every '
             'call counted (mmengine/fvcore "flops"; 1 MAC ~ 2 FLOPs)'),
}

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


@functools.lru_cache(maxsize=None)
def _deform_convs() -> tuple:
    """mmcv's deformable convolutions (``DCN``, ``DCNv2``): counted as the conv they compute."""
    from mmcv.ops import DeformConv2d, ModulatedDeformConv2d
    return (DeformConv2d, ModulatedDeformConv2d)


@functools.lru_cache(maxsize=None)
def _macs_free_mmcv() -> tuple:
    """mmcv leaves without multiply-accumulates: learnable scales, RoI pooling."""
    from mmcv.cnn import Scale
    from mmcv.ops import RoIAlign, RoIPool
    return (Scale, RoIAlign, RoIPool)


def _is_conv(m: nn.Module) -> bool:
    return (isinstance(m, _ConvNd) and not isinstance(m, _ConvTransposeNd)
            or isinstance(m, _deform_convs()))


def _paper_ops(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Optional[int]:
    """Ops of one call of leaf module ``m`` under the paper's (thop 2019) rules, None if unknown."""
    if _is_conv(m):
        per_elem = math.prod(m.kernel_size) + (1 if getattr(m, 'bias', None) is not None else 0)
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
    if _is_conv(m):
        return y.numel() * m.in_channels // m.groups * math.prod(m.kernel_size)
    if isinstance(m, _ConvTransposeNd):  # every input element meets Cout/g * k weights
        return x.numel() * m.out_channels // m.groups * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return y.numel() * m.in_features
    if isinstance(m, _MACS_FREE + _macs_free_mmcv()):
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

    # Leaves, and deformable convs (a parent of their offset conv) that compute a conv themselves.
    leaves = [m for m in model.modules()
              if next(m.children(), None) is None or isinstance(m, _deform_convs())]
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
        cfg (str | Config | dict): A config file path (``mmdet::`` names mmdet's configs), a
            full config (with ``model``), or a model config dict (with ``type``; any type
            registered in ``mmdet.registry.MODELS``).

    Returns:
        nn.Module: The built model; pretrained weights are not loaded (``init_weights`` is not
        called), so no checkpoint or dataset is needed.
    """
    from mmengine.config import Config, ConfigDict
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    if isinstance(cfg, str):
        cfg = load_config(cfg)
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


def _fake_sample(x: torch.Tensor):
    """A ``DetDataSample`` describing the batch ``x`` of one unpadded, unscaled image."""
    from mmdet.structures import DetDataSample
    size = tuple(x.shape[-2:])
    return DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size,
                                       batch_input_shape=size, scale_factor=(1.0, 1.0)))


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
    """The forward to count: mmdet detectors without post-processing, others as they are.

    Single-stage detectors run mmdet's ``mode='tensor'`` (``extract_feat`` + head forward).
    Two-stage detectors run ``extract_feat``, the RPN head's forward, and the RoI head's
    ``forward`` (mmdet's ``mode='tensor'`` path) on :func:`proposal_count` fixed proposals instead
    of those the RPN selects from an image: the count does not depend on data (selecting
    proposals has no MACs).
    """
    from mmdet.models.detectors import BaseDetector, TwoStageDetector
    if isinstance(model, TwoStageDetector):
        num = proposal_count(model, num_proposals)

        def two_stage(x):
            feats = model.extract_feat(x)
            if model.with_rpn:
                model.rpn_head(feats)
            return model.roi_head.forward(feats, [_fake_proposals(x, num)], [_fake_sample(x)])

        return two_stage
    if isinstance(model, BaseDetector):
        return lambda x: model(x, [_fake_sample(x)], mode='tensor')
    return model


def _conv_output(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An empty tensor of the output shape of conv-like ``m`` (stride, padding, dilation)."""
    sizes = [(size + 2 * pad - dil * (k - 1) - 1) // stride + 1 for size, k, stride, pad, dil in
             zip(x.shape[2:], m.kernel_size, m.stride, m.padding, m.dilation)]
    return x.new_empty(x.shape[0], m.out_channels, *sizes)


def _shape_only_deform_conv(self, x, *args):
    if hasattr(self, 'conv_offset'):  # the Pack variants predict their offsets with a plain conv
        self.conv_offset(x)
    return _conv_output(self, x)


def _shape_only_roi_extractor(self, feats, rois, roi_scale_factor=None):
    size = self.roi_layers[0].output_size
    return feats[0].new_empty(rois.size(0), self.out_channels, *size)


@contextlib.contextmanager
def _shape_only_compiled_ops(model: nn.Module):
    """Let mmcv's compiled ops, which need values, run on the meta device by their shapes only.

    Deformable convs (still running their offset conv) and RoI extractors return empty tensors of
    their output shape for the time of the context; their cost rules need no more.
    """
    from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
    patched = []
    for m in model.modules():
        if isinstance(m, _deform_convs()):
            m.forward = types.MethodType(_shape_only_deform_conv, m)
        elif isinstance(m, BaseRoIExtractor):
            m.forward = types.MethodType(_shape_only_roi_extractor, m)
        else:
            continue
        patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


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
                  num_classes: Optional[int] = None, num_proposals: Optional[int] = None
                  ) -> Tuple[nn.Module, Tuple[int, ...], dict]:
    """Build (if needed) and count ``target``: (model, input shape, :func:`count_ops` result).

    A model built here is built on the ``meta`` device: only shapes matter to both conventions, so
    no memory is allocated and nothing is computed. A network that needs real values in its
    forward, or whose input is tiny (CIFAR's 32x32: there each meta op's Python bookkeeping costs
    more than the real op), is rebuilt on the CPU. A given module is counted where it is.
    """
    devices = (None, ) if isinstance(target, nn.Module) else ('meta', 'cpu')
    cifar_name = isinstance(target, str) and target.startswith('cifar_')
    known = input_shape or ((3, 32, 32) if cifar_name else None)
    if known and devices[0] == 'meta' and math.prod(known[-2:]) <= _TINY_INPUT:
        devices = ('cpu', )
    if isinstance(target, str) and target.endswith('.py'):
        target = load_config(target)  # once: reading resolves every base
    for device in devices:
        model = _resolve(target, device, num_classes)
        shape = _check_shape(input_shape) if input_shape else _default_shape(target, model)
        if device == 'meta' and math.prod(shape[-2:]) <= _TINY_INPUT:
            continue
        param = next(model.parameters(), None)
        x = torch.rand(1, *shape, device=param.device if param is not None else (device or 'cpu'))
        on_meta = x.device.type == 'meta'
        try:
            with _shape_only_compiled_ops(model) if on_meta else contextlib.nullcontext():
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
    _check_convention(convention)
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
        if cls.__name__.lower() in _DISPLAY and depth is not None:
            return f'{_DISPLAY[cls.__name__.lower()]}-{depth}'
    if isinstance(target, str):
        name = osp.splitext(osp.basename(target))[0]
        stem = name.rstrip('0123456789')
        if stem in _DISPLAY and stem != name:
            return f'{_DISPLAY[stem]}-{name[len(stem):]}'
        return name
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


def _default_shape(target, model: nn.Module) -> Tuple[int, ...]:
    task = _task_of(model)
    if task.startswith('cifar'):
        return (3, 32, 32)
    if getattr(model, 'setting', None) == 'video':
        return (3, 16, 224, 224)
    if task == 'imagenet':
        return (3, 224, 224)
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
        model, shape, counts = _count_target(target, input_shape, tuple(_RULES), num_classes,
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
                uncounted_by_convention={c: counts[c]['uncounted'] for c in _RULES}))
        del model
    return rows


def _fmt_ref(value: Optional[float]) -> str:
    """A paper value as the paper prints it (a :class:`~iresnet_mmdet.paper.Figure`'s text)."""
    return '-' if value is None else str(value)


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
        task = r.get('detector') if r['task'] == 'detector' else _TASK_LABELS.get(r['task'],
                                                                                    'Backbone')
        source = osp.basename(r['target']) if r['target'].endswith('.py') else r['target']
        cifar_cell = f"| {r['paper_cifar_flops'] / 1e9:.2f} " if cifar else ''
        lines.append(
            f"| {task} {r['name']} | {'x'.join(map(str, r['input_shape'][1:]))} "
            f"| {r['params'] / 1e6:.2f} | {r['paper_flops'] / 1e9:.2f} {cifar_cell}"
            f"| {r['macs'] / 1e9:.2f} | {_fmt_ref(r['ref_params_m'])} "
            f"| {_fmt_ref(r['ref_gflops'])} | `{source}` |")
    return '\n'.join(lines)


def _config_name(target: str) -> str:
    """How a table names a config: mmdet's as ``mmdet::<dir>/<file>``, others by file name."""
    return target if target.startswith('mmdet::') else osp.basename(target)


def detector_table(rows: Sequence[dict]) -> str:
    """Format :func:`complexity_rows` of detectors as a markdown table of params and GMACs.

    Args:
        rows (Sequence[dict]): Output of :func:`complexity_rows`.

    Returns:
        str: Columns Detector, Backbone (``+ DCN`` when it has deformable convs), Input (HxW),
        Params (M), GMACs (conv+linear) and Config.
    """
    lines = ['| Detector | Backbone | Input | Params (M) | GMACs (conv+linear) | Config |',
             '|---|---|---|---|---|---|']
    for r in rows:
        backbone = r['name'] + (' + DCN' if r['dcn'] else '')
        lines.append(
            f"| {r['detector'] or '-'} | {backbone} | {'x'.join(map(str, r['input_shape'][1:]))} "
            f"| {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.2f} | `{_config_name(r['target'])}` |")
    return '\n'.join(lines)
