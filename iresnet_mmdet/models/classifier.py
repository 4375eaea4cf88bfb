"""The classification form of the backbones: backbone + global average pool + fc.

Its state-dict keys and shapes are exactly those of the authors' released models (``conv1``,
``bn1``, ``layer1.0.conv1``, ..., ``fc.weight``), so an official checkpoint loads with
``strict=True``; the backbone's own keys are the same without ``fc.*``. The same form serves the
CIFAR networks (``'cifar_iresnet3002'``) and the video networks (``'iresnet3d50'``, 3D pooling).
"""
import functools
from typing import Optional, Tuple

import torch
import torch.nn as nn

from mmdet.registry import MODELS
from . import zoo

class ClassifierMixin:
    """Turns a backbone class into its classifier (adds ``avgpool`` and ``fc``).

    ``num_classes=None`` takes the backbone's ``default_num_classes`` (ImageNet: 1000, CIFAR: 10,
    video: 400); the pool is 3D for 3D backbones (``dims=3``).
    """

    def __init__(self, num_classes: Optional[int] = None, **backbone_kwargs):
        backbone_kwargs.setdefault('norm_eval', False)
        num_stages = backbone_kwargs.get('num_stages') or self._num_arch_stages(
            backbone_kwargs.get('depth'))
        backbone_kwargs.setdefault('out_indices', (num_stages - 1,))
        super().__init__(**backbone_kwargs)
        dims = getattr(self, 'dims', 2)
        self.avgpool = (nn.AdaptiveAvgPool2d((1, 1)) if dims == 2 else
                        nn.AdaptiveAvgPool3d((1, ) * dims))
        if num_classes is None:
            num_classes = getattr(self, 'default_num_classes', 1000)
        self.fc = nn.Linear(self.feat_dim, num_classes)

    @classmethod
    def _num_arch_stages(cls, depth) -> int:
        """Stages of ``depth`` (4 where unknown: the backbone then reports the bad depth)."""
        entry = getattr(cls, 'arch_settings', {}).get(depth)
        return len(entry[1]) if entry else 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def train(self, mode: bool = True):
        # mmdet's ResNet.train() returns None; nn.Module's contract (model.eval() is the model)
        # matters for the classifier form.
        super().train(mode)
        return self


@functools.lru_cache(maxsize=None)
def classifier_class(backbone_type: str) -> type:
    """The classifier class of a registered backbone type, e.g. ``'iResNet'``."""
    backbone_cls = MODELS.get(backbone_type)
    if backbone_cls is None:
        raise KeyError(f'unknown backbone type {backbone_type!r}')
    return type(f'{backbone_type}Classifier', (ClassifierMixin, backbone_cls), {})


def parse_arch(arch: str) -> Tuple[str, int]:
    """Split an architecture name of the authors' zoo, e.g. ``'iresgroupfix50'``,
    ``'cifar_iresnet3002'`` or ``'iresnet3d50'``, into (registered backbone type, depth).

    ResNet depths that mmdet's ``ResNet`` lacks (``'resnet200'``) map to ``ResidualNetwork``, whose
    default layout is the same network with the same keys.
    """
    family, depth = zoo.parse_arch(arch)
    backbone_type = family.backbone_type
    if backbone_type == 'ResNet' and depth not in MODELS.get('ResNet').arch_settings:
        backbone_type = 'ResidualNetwork'  # mmdet's ResNet stops at 152
    return backbone_type, depth


def build_classifier(arch: str, num_classes: Optional[int] = None, **kwargs) -> nn.Module:
    """Build the classification form of an architecture of the authors' zoo.

    Args:
        arch: e.g. ``'resnet50'``, ``'iresnet50'``, ``'resstage101'``, ``'iresgroupfix50'``;
            CIFAR: ``'cifar_resnet164'`` ... ``'cifar_iresnet3002'``; video: ``'resnet3d50'``,
            ``'iresnet3d50'`` (input ``(N, 3, T, H, W)``).
        num_classes: outputs of the fc layer; ``None``: 1000 (ImageNet), 10 (CIFAR), 400 (video,
            Kinetics-400).
        **kwargs: further backbone arguments (``base_channels``, ``with_cp``, ...).

    Returns:
        A module mapping images (or clips) to logits, with the authors' state-dict layout.
    """
    backbone_type, depth = parse_arch(arch)
    if backbone_type == 'ResNet':
        # mmdet's ResNet zero-initialises residual norms by default; the authors' do not.
        kwargs.setdefault('zero_init_residual', False)
    return classifier_class(backbone_type)(num_classes=num_classes, depth=depth, **kwargs)


__all__ = ['build_classifier', 'classifier_class', 'parse_arch']
