"""The ImageNet form of the backbones: backbone + global average pool + fc.

Its state-dict keys and shapes are exactly those of the authors' released models (``conv1``,
``bn1``, ``layer1.0.conv1``, ..., ``fc.weight``), so an official checkpoint loads with
``strict=True``; the backbone's own keys are the same without ``fc.*``.
"""
import functools
import re
from typing import Tuple

import torch
import torch.nn as nn

from mmdet.registry import MODELS

#: Architecture-name prefixes of the authors' model zoo and the backbone class of each.
ARCH_FAMILIES = {
    'resnet': 'ResNet',
    'preactresnet': 'PreActResNet',
    'resstage': 'ResStage',
    'iresnet': 'iResNet',
    'resgroup': 'ResGroup',
    'resgroupfix': 'ResGroupFix',
    'iresgroup': 'iResGroup',
    'iresgroupfix': 'iResGroupFix',
}


class ClassifierMixin:
    """Turns a backbone class into its ImageNet classifier (adds ``avgpool`` and ``fc``)."""

    def __init__(self, num_classes: int = 1000, **backbone_kwargs):
        backbone_kwargs.setdefault('norm_eval', False)
        num_stages = backbone_kwargs.get('num_stages', 4)
        backbone_kwargs.setdefault('out_indices', (num_stages - 1,))
        super().__init__(**backbone_kwargs)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.feat_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))


@functools.lru_cache(maxsize=None)
def classifier_class(backbone_type: str) -> type:
    """The classifier class of a registered backbone type, e.g. ``'iResNet'``."""
    backbone_cls = MODELS.get(backbone_type)
    if backbone_cls is None:
        raise KeyError(f'unknown backbone type {backbone_type!r}')
    return type(f'{backbone_type}Classifier', (ClassifierMixin, backbone_cls), {})


def parse_arch(arch: str) -> Tuple[str, int]:
    """Split an architecture name of the authors' zoo, e.g. ``'iresgroupfix50'``, into
    (backbone type, depth)."""
    match = re.fullmatch(r'([a-z]+)(\d+)', arch.lower())
    if match is None or match.group(1) not in ARCH_FAMILIES:
        raise KeyError(f'unknown architecture {arch!r}; expected <family><depth> with family one '
                       f'of {sorted(ARCH_FAMILIES)}, e.g. iresnet50')
    return ARCH_FAMILIES[match.group(1)], int(match.group(2))


def build_classifier(arch: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Build the ImageNet form of an architecture of the authors' zoo.

    Args:
        arch: e.g. ``'resnet50'``, ``'iresnet50'``, ``'resstage101'``, ``'iresgroupfix50'``.
        num_classes: outputs of the fc layer.
        **kwargs: further backbone arguments (``base_channels``, ``with_cp``, ...).

    Returns:
        A module mapping images to logits, with the authors' state-dict layout.
    """
    backbone_type, depth = parse_arch(arch)
    if backbone_type == 'ResNet':
        # mmdet's ResNet zero-initialises residual norms by default; the authors' do not.
        kwargs.setdefault('zero_init_residual', False)
    return classifier_class(backbone_type)(num_classes=num_classes, depth=depth, **kwargs)


__all__ = ['ARCH_FAMILIES', 'build_classifier', 'classifier_class', 'parse_arch']
