"""The counting rules of the three FLOP conventions, and the hook counter that applies them.

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
"""
import functools
import math
from collections import defaultdict
from typing import Callable, Dict, Optional, Sequence

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
             'multiply-accumulates of conv (deformable, transposed too) and linear layers, every '
             'call counted (mmengine/fvcore "flops"; 1 MAC ~ 2 FLOPs)'),
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
def deform_convs() -> tuple:
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
            or isinstance(m, deform_convs()))


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


class _LeafCounter:
    """Forward hook of the leaf modules: the ops of each call, per convention."""

    def __init__(self, conventions: Sequence[str]):
        self.conventions = tuple(conventions)
        self.per_module = {c: {} for c in self.conventions}
        self.unknown = {c: set() for c in self.conventions}
        self.called = set()

    def __call__(self, module: nn.Module, args, output) -> None:
        x, y = _first_tensor(args), _first_tensor(output)
        self.called.add(module)
        if x is None or y is None:
            return
        for conv in self.conventions:
            rule, accumulate = _RULES[conv]
            ops = rule(module, x, y)
            if ops is None:
                self.unknown[conv].add(type(module).__name__)
                continue
            # paper: thop assigned (last call wins); paper-cifar, macs: every call adds.
            prev = self.per_module[conv].get(module, 0) if accumulate else 0
            self.per_module[conv][module] = prev + ops

    def totals(self, conv: str) -> dict:
        """``dict(total, by_type, uncounted)`` of one convention."""
        by_type = defaultdict(int)
        for module, ops in self.per_module[conv].items():
            by_type[type(module).__name__] += ops
        return dict(total=sum(by_type.values()), by_type=dict(by_type),
                    uncounted=sorted(self.unknown[conv]))


def _counted_leaves(model: nn.Module) -> list:
    """Leaves, and deformable convs (a parent of their offset conv) that compute a conv themselves.
    """
    return [m for m in model.modules()
            if next(m.children(), None) is None or isinstance(m, deform_convs())]


def _run_hooked(model: nn.Module, leaves: list, hook, forward: Callable, inputs) -> None:
    """``forward(inputs)`` in eval mode without gradients, ``hook`` on ``leaves`` meanwhile."""
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
        check_convention(conv)
    counter = _LeafCounter(conventions)
    leaves = _counted_leaves(model)
    _run_hooked(model, leaves, counter, forward, inputs)
    results = {conv: counter.totals(conv) for conv in conventions}
    results['_unused_params'] = sum(
        p.numel() for m in leaves if m not in counter.called for p in m.parameters(recurse=False))
    return results


def check_convention(convention: str) -> None:
    """Raise a ValueError naming the conventions for an unknown one."""
    if convention not in CONVENTIONS:
        raise ValueError(f'Unknown FLOPs convention {convention!r}: use one of '
                         f'{sorted(CONVENTIONS)} (see iresnet_mmdet.analysis.counting).')
