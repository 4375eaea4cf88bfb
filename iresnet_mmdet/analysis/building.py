"""Build the model to analyse from a config, a config file or an architecture name, without data.

Nothing is loaded: no checkpoint (``init_weights`` is not called), no dataset. Built on PyTorch's
``meta`` device a model has shapes only (no memory, no arithmetic); :func:`shape_only_compiled_ops`
lets mmcv's compiled ops, which need values, run there by their shapes. Used by the complexity
counter and the benchmarks.
"""
import contextlib
import os.path as osp
import types
from typing import Optional

import torch
import torch.nn as nn

from iresnet_mmdet.config import load_config
from .counting import deform_convs


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


def build_target(target, device: Optional[str] = None,
                 num_classes: Optional[int] = None) -> nn.Module:
    """Build ``target`` (on ``device``, e.g. ``'meta'``) unless it is already a module.

    Args:
        target (str | Config | dict | nn.Module): A config file (``mmdet::`` names mmdet's), a
            (model) config, an architecture name (``'iresnet50'``) or a built module.
        device (str, optional): Where to build, e.g. ``'meta'`` (shapes only, no memory).
        num_classes (int, optional): Classes of a classifier built from a name.

    Returns:
        nn.Module: The model, without pretrained weights.
    """
    if isinstance(target, nn.Module):
        return target
    with torch.device(device) if device else contextlib.nullcontext():
        if isinstance(target, str) and not target.endswith('.py') and not osp.exists(target):
            return build_named(target, num_classes)
        return build_from_config(target)


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
def shape_only_compiled_ops(model: nn.Module):
    """Let mmcv's compiled ops, which need values, run on the meta device by their shapes only.

    Deformable convs (still running their offset conv) and RoI extractors return empty tensors of
    their output shape for the time of the context; their cost rules need no more.
    """
    from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
    patched = []
    for m in model.modules():
        if isinstance(m, deform_convs()):
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
