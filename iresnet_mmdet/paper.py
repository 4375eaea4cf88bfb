"""The published figures of the iResNet paper, exactly as printed.

Ionut Cosmin Duta, Li Liu, Fan Zhu, Ling Shao, "Improved Residual Networks for Image and Video
Recognition", ICPR 2020, arXiv:2004.04989 (https://arxiv.org/abs/2004.04989).

Every tool, test and document of this project that shows or compares a figure of the paper reads
it from this module. The tables are named after their content, in the paper's order:

* :data:`IMAGENET_DEPTH`: ImageNet validation error of ResNet, pre-activation ResNet, ResStage
  and iResNet at 50, 101, 152 and 200 layers (224x224, single crop);
* :data:`IMAGENET_EXTREME_DEPTH`: iResNet-302 and iResNet-404 on ImageNet;
* :data:`IMAGENET_GROUP`: ResNeXt, ResGroupFix, ResGroup, iResGroupFix and iResGroup at 50, 101
  and 152 layers, with the ResNet baseline;
* :data:`ARCHITECTURE_COMPLEXITY`: the architecture table (ResNet-50, ResGroupFix-50,
  ResGroup-50) and :data:`RESGROUP_GROUPS`, the groups per stage it states;
* :data:`CIFAR`: CIFAR-10/100 error at 164, 1001, 2000 and 3002 layers;
* :data:`VIDEO`: Kinetics-400 and Something-Something-v2 error of the 3D networks;
* :data:`STATE_OF_THE_ART`: the comparison with other networks on ImageNet;
* :data:`SSD300_COCO`: the SSD300 detection table on COCO val2017 (twelve AP/AR figures).

Errors, AP and AR are in percent, params in millions, GFLOPs as the paper's counter gives them
(see :mod:`iresnet_mmdet.analysis.complexity`, convention ``'paper'``; ``'paper-cifar'`` for the
CIFAR table). Each number is a :class:`Figure`, a float that keeps the text the paper printed, so
:func:`matches` compares a measured value at the paper's precision, the same rule for every
number (``124.52`` matches the printed ``124.5``, ``20.99`` does not match ``20.98``).
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .coco_figures import FIGURE_NAMES

CITATION = ('Duta, Liu, Zhu, Shao, "Improved Residual Networks for Image and Video Recognition", '
            'ICPR 2020, arXiv:2004.04989')



class Figure(float):
    """A published number: a float that remembers its printed text, e.g. ``Figure('26.20')``.

    Args:
        text (str): The number as the paper prints it.
    """

    def __new__(cls, text: str):
        value = super().__new__(cls, text)
        value.text = text
        return value

    def __getnewargs__(self):
        return (self.text, )

    @property
    def decimals(self) -> int:
        """How many decimals the paper printed."""
        return len(self.text.partition('.')[2])

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def matches(measured: float, published: Optional[Figure]) -> bool:
    """Whether ``measured``, rounded to the decimals the paper printed, is the printed number.

    Args:
        measured (float): Our value, in the paper's unit.
        published (Figure): The paper's number; None (not published) never matches.

    Returns:
        bool: ``f'{measured:.{published.decimals}f}' == published.text``.
    """
    return published is not None and f'{measured:.{published.decimals}f}' == published.text


def _numbers(row: str) -> Tuple[Optional[Figure], ...]:
    """The printed numbers of a row, ``-`` (not given) and ``fail`` (did not train) as None."""
    return tuple(None if cell in ('-', 'fail') else Figure(cell) for cell in row.split())


@dataclass(frozen=True)
class Classification:
    """One network of a classification table.

    Attributes:
        top1 (Figure, optional): Top-1 error (%); None where training failed.
        top5 (Figure, optional): Top-5 error (%); None where not given.
        params (Figure): Parameters (M).
        gflops (Figure): GFLOPs (paper counter).
    """
    top1: Optional[Figure]
    top5: Optional[Figure]
    params: Figure
    gflops: Figure


def _classification(rows: Dict[str, str]) -> 'OrderedDict[str, Classification]':
    return OrderedDict((name, Classification(*_numbers(row))) for name, row in rows.items())


# ImageNet validation error (%), 224x224 single crop: top-1, top-5, params (M), GFLOPs.
# The paper's "baseline" is ResNet, "pre-activation" the pre-activation ResNet.
IMAGENET_DEPTH = _classification({
    'ResNet-50': '23.88 7.06 25.56 4.14',
    'PreActResNet-50': '23.77 7.04 25.56 4.14',
    'ResStage-50': '23.25 6.81 25.56 4.14',
    'iResNet-50': '22.69 6.46 25.56 4.18',
    'ResNet-101': '22.00 6.10 44.55 7.88',
    'PreActResNet-101': '22.11 6.26 44.55 7.88',
    'ResStage-101': '21.75 6.01 44.55 7.88',
    'iResNet-101': '21.36 5.63 44.55 7.92',
    'ResNet-152': '21.55 5.74 60.19 11.62',
    'PreActResNet-152': '21.41 5.78 60.19 11.62',
    'ResStage-152': '21.03 5.65 60.19 11.62',
    'iResNet-152': '20.66 5.43 60.19 11.65',
    'ResNet-200': '22.45 6.39 64.67 15.16',
    'PreActResNet-200': '21.29 5.67 64.67 15.16',
    'ResStage-200': '20.88 5.57 64.67 15.16',
    'iResNet-200': '20.52 5.36 64.67 15.19',
})

# Extreme depth on ImageNet: top-1, top-5, params (M), GFLOPs.
IMAGENET_EXTREME_DEPTH = _classification({
    'iResNet-302': '20.45 5.28 96.59 22.67',
    'iResNet-404': '20.30 5.26 124.5 30.15',
})

# Grouped building blocks on ImageNet: top-1, top-5, params (M), GFLOPs.
IMAGENET_GROUP = _classification({
    'ResNet-50': '23.88 7.06 25.56 4.14',
    'ResNeXt-50': '22.44 6.25 25.03 4.30',
    'ResGroupFix-50': '21.96 6.15 23.37 4.30',
    'ResGroup-50': '21.73 5.94 24.89 5.43',
    'iResGroupFix-50': '21.88 5.99 23.37 4.47',
    'iResGroup-50': '21.55 5.75 24.89 5.60',
    'ResNet-101': '22.00 6.10 44.55 7.88',
    'ResNeXt-101': '21.03 5.66 44.18 8.07',
    'ResGroupFix-101': '20.94 5.56 43.79 8.33',
    'ResGroup-101': '20.98 5.46 47.81 9.94',
    'iResGroupFix-101': '20.92 5.54 43.79 8.49',
    'iResGroup-101': '20.55 5.45 47.81 10.11',
    'ResNet-152': '21.55 5.74 60.19 11.62',
    'ResNeXt-152': '20.98 5.48 59.95 11.84',
    'ResGroupFix-152': '20.70 5.48 60.61 12.35',
    'ResGroup-152': '20.81 5.48 66.99 14.70',
    'iResGroupFix-152': '20.75 5.51 60.61 12.53',
    'iResGroup-152': '20.34 5.20 66.99 14.87',
})

# The architecture table: params (M), GFLOPs.
ARCHITECTURE_COMPLEXITY = OrderedDict(
    (name, _numbers(row)) for name, row in {
        'ResNet-50': '25.56 4.14',
        'ResGroupFix-50': '23.37 4.30',
        'ResGroup-50': '24.89 5.43',
    }.items())
#: Groups of the 3x3 convolution in stages 1-4, as the architecture table states.
RESGROUP_GROUPS = {'ResGroupFix': (64, 64, 64, 64), 'ResGroup': (8, 16, 32, 64)}


@dataclass(frozen=True)
class CifarResult:
    """One network of the CIFAR table.

    Attributes:
        top1 (Figure, optional): Top-1 error (%), the best of five runs at 164 layers; None where
            the paper reports that training failed.
        params (Figure): Parameters (M).
        gflops (Figure): GFLOPs (paper CIFAR counter, ``'paper-cifar'``).
        mean (Figure, optional): Mean top-1 error of the five runs (164 layers only).
        std (Figure, optional): Its standard deviation (164 layers only).
    """
    top1: Optional[Figure]
    params: Figure
    gflops: Figure
    mean: Optional[Figure] = None
    std: Optional[Figure] = None


def _cifar(rows: Dict[str, str]) -> 'OrderedDict[str, CifarResult]':
    """Rows of ``'top1 params gflops [mean std]'``."""
    out = OrderedDict()
    for name, row in rows.items():
        top1, params, gflops, *spread = _numbers(row)
        out[name] = CifarResult(top1, params, gflops, *spread)
    return out


# CIFAR classification error (%): {dataset: {network: result}}. "ResNet" is the paper's baseline.
CIFAR = {
    'cifar10': _cifar({
        'ResNet-164': '5.23 1.70 0.26 5.54 0.37',
        'iResNet-164': '4.80 1.70 0.26 5.00 0.14',
        'ResNet-1001': '7.43 10.33 1.59',
        'iResNet-1001': '4.61 10.33 1.59',
        'ResNet-2000': 'fail 20.62 3.17',
        'iResNet-2000': '4.40 20.62 3.17',
        'ResNet-3002': 'fail 30.93 4.75',
        'iResNet-3002': '4.95 30.93 4.75',
    }),
    'cifar100': _cifar({
        'ResNet-164': '23.86 1.73 0.26 24.48 0.39',
        'iResNet-164': '22.26 1.73 0.26 22.37 0.13',
        'ResNet-1001': '26.98 10.35 1.59',
        'iResNet-1001': '20.92 10.35 1.59',
        'ResNet-2000': 'fail 20.65 3.17',
        'iResNet-2000': '21.12 20.65 3.17',
        'ResNet-3002': 'fail 30.96 4.75',
        'iResNet-3002': '21.46 30.96 4.75',
    }),
}

# Video recognition error (%) on 16x224x224 clips: {dataset: {network: result}}. The paper's
# "baseline3D-50" is ResNet3D-50.
VIDEO = {
    'kinetics400': _classification({
        'ResNet3D-50': '37.01 15.41 47.00 93.26',
        'iResNet3D-50': '33.91 13.36 47.00 93.93',
    }),
    'ssv2': _classification({
        'ResNet3D-50': '46.50 19.02 46.54 93.26',
        'iResNet3D-50': '45.56 17.73 46.54 93.93',
    }),
}


@dataclass(frozen=True)
class Comparison:
    """One network of the comparison with other networks (single-crop ImageNet error, %).

    Attributes:
        top1_224 (Figure, optional): Top-1 error at 224x224; None where not given.
        top5_224 (Figure, optional): Top-5 error at 224x224.
        top1_large (Figure, optional): Top-1 error at 320x320 (or larger).
        top5_large (Figure, optional): Top-5 error at 320x320 (or larger).
    """
    top1_224: Optional[Figure]
    top5_224: Optional[Figure]
    top1_large: Optional[Figure]
    top5_large: Optional[Figure]


STATE_OF_THE_ART = OrderedDict(
    (name, Comparison(*_numbers(row))) for name, row in {
        'ResNet-200': '21.7 5.8 20.1 4.8',
        'Inception-v3': '- - 21.2 5.6',
        'Inception-v4': '- - 20.0 5.0',
        'Inception-ResNet': '- - 19.9 4.9',
        'DenseNet-264': '22.15 6.12 - -',
        'Attention-92': '- - 19.5 4.8',
        'NASNet-A': '- - 17.3 3.8',
        'SENet-154': '18.68 4.47 17.28 3.79',
        'iResNet-200': '20.52 5.36 19.36 4.56',
        'iResNet-404': '20.30 5.26 19.35 4.61',
        'iResGroup-152': '20.34 5.20 19.09 4.59',
    }.items())


@dataclass(frozen=True)
class Detection:
    """One row of the SSD300 table.

    Attributes:
        figures (OrderedDict): :data:`FIGURE_NAMES` -> Figure, in percent.
        params (Figure): Parameters (M).
        gflops (Figure): GFLOPs (paper counter) at 300x300.
    """
    figures: 'OrderedDict[str, Figure]'
    params: Figure
    gflops: Figure


def _detection(rows: Dict[str, str]) -> 'OrderedDict[str, Detection]':
    out = OrderedDict()
    for name, row in rows.items():
        *figures, params, gflops = _numbers(row)
        out[name] = Detection(OrderedDict(zip(FIGURE_NAMES, figures)), params, gflops)
    return out


# SSD300 on COCO val2017: AP .5:.95, .5, .75, S, M, L; AR 1, 10, 100, S, M, L; params; GFLOPs.
SSD300_COCO = _detection({
    'ResNet-50':
    '26.20 43.97 26.96 8.12 28.22 42.64 24.50 35.41 37.07 12.61 40.76 57.25 22.89 20.92',
    'iResNet-50':
    '27.74 45.85 28.51 8.52 30.07 44.62 25.29 36.90 38.51 13.28 42.79 58.57 22.89 20.99',
    'iResGroupFix-50':
    '28.90 47.44 29.99 9.70 31.49 45.83 25.97 37.84 39.52 14.63 44.17 59.52 21.13 18.61',
    'iResGroup-50':
    '29.56 48.38 30.87 10.33 32.52 46.62 26.40 38.49 40.24 15.10 44.82 60.20 22.66 21.62',
    'ResNet-101':
    '29.58 47.69 30.80 9.38 31.96 47.64 26.47 38.00 39.64 14.09 43.54 61.03 41.89 48.45',
    'iResNet-101':
    '30.92 49.50 32.29 10.05 34.27 49.13 27.15 39.34 41.08 15.21 45.93 61.90 41.89 48.49',
    'iResGroupFix-101':
    '31.64 50.70 33.28 11.21 34.91 50.20 27.94 40.41 42.22 16.84 46.99 63.64 41.55 48.25',
    'iResGroup-101':
    '32.81 51.78 34.55 11.81 36.56 51.72 28.37 41.43 43.22 17.20 48.54 64.08 45.58 54.87',
})


def imagenet_complexity() -> Dict[str, Tuple[Figure, Figure]]:
    """Params (M) and GFLOPs of every ImageNet network the paper prints, by name."""
    out = {}
    for table in (IMAGENET_DEPTH, IMAGENET_GROUP, IMAGENET_EXTREME_DEPTH):
        out.update((name, (row.params, row.gflops)) for name, row in table.items())
    return out
