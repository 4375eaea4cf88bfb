"""Other formulations of the grouped 3x3 convs of a detector's backbone, timed against oneDNN's.

The grouped 3x3 convs with few channels per group are where the iResGroup(Fix) SSD300 detectors
lose time on a CPU (docs/detector_speed.md). This script finds every distinct grouped conv of the
given configs' backbones (their input shapes at ``--batch`` x ``--size``), computes each one in
several formulations that give the same result, and times them side by side, round-robin:

* ``onednn``: ``F.conv2d`` with ``groups`` on NCHW tensors (what the models run);
* ``channels-last``: the same on NHWC tensors;
* ``merge-K``: K neighbouring groups computed as one group of a block-diagonal weight (K times
  the multiply-adds, in a wider group that oneDNN may run faster); the zero blocks add exact
  zeros. ``GroupedConv2d``, the models' grouped conv, trains this way where it measured faster;
* ``unfold-matmul``: ``F.unfold`` to columns, then one batched matrix product per group.

For each it prints the forward and the forward + backward median (gradients of input and weight),
the forward GMAC/s (useful multiply-adds only), the speed relative to ``onednn`` and the largest
difference from ``onednn``'s output relative to its largest magnitude.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/grouped_conv.py [CONFIG ...]
        [--batch 8] [--size 300] [--threads N] [--repeats 5] [--merge 2,4]
"""
import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from iresnet_mmdet.config import load_config
from iresnet_mmdet.errors import ToolError, run_main
from iresnet_mmdet.models.backbones.grouped_conv import block_diagonal

DEFAULT_CONFIGS = ('configs/ssd300/ssd300_iresgroupfix50_8xb32-65e_coco.py',
                   'configs/ssd300/ssd300_iresgroup50_8xb32-65e_coco.py')

#: (input shape N, C, H, W; out channels; groups; stride): one distinct grouped 3x3 conv.
ConvShape = Tuple[Tuple[int, int, int, int], int, int, int]


def grouped_conv_shapes(backbone: nn.Module, batch: int, size: int) -> Dict[ConvShape, int]:
    """The distinct grouped 3x3 convs that ``backbone`` runs on a ``batch`` x 3 x ``size`` x
    ``size`` input, each with the number of layers of that shape."""
    found: Dict[ConvShape, int] = {}

    def record(module, inputs):
        key = (tuple(inputs[0].shape), module.out_channels, module.groups, module.stride[0])
        found[key] = found.get(key, 0) + 1

    convs = [m for m in backbone.modules()
             if isinstance(m, nn.Conv2d) and m.groups > 1 and m.kernel_size == (3, 3)]
    handles = [m.register_forward_pre_hook(record) for m in convs]
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(batch, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return found


def unfold_matmul(x: torch.Tensor, weight: torch.Tensor, groups: int, stride: int) -> torch.Tensor:
    """A grouped 3x3 conv (padding 1) as columns times one weight matrix per group."""
    n, channels, height, width = x.shape
    out_h = (height - 1) // stride + 1
    out_w = (width - 1) // stride + 1
    columns = F.unfold(x, 3, padding=1, stride=stride)
    columns = columns.reshape(n, groups, channels // groups * 9, out_h * out_w)
    matrices = weight.reshape(groups, weight.shape[0] // groups, -1)
    return torch.matmul(matrices, columns).reshape(n, weight.shape[0], out_h, out_w)


def formulations(groups: int, stride: int, merges: Sequence[int]) -> Dict[str, Callable]:
    """Name -> function(x, weight) of every formulation that applies to this conv."""
    def onednn(x, w):
        return F.conv2d(x, w, stride=stride, padding=1, groups=groups)

    def channels_last(x, w):
        return F.conv2d(x.contiguous(memory_format=torch.channels_last),
                        w.contiguous(memory_format=torch.channels_last),
                        stride=stride, padding=1, groups=groups)

    result = {'onednn': onednn, 'channels-last': channels_last}
    for merge in merges:
        if merge > 1 and groups % merge == 0:
            result[f'merge-{merge}'] = (
                lambda x, w, k=merge: F.conv2d(x, block_diagonal(w, groups, k), stride=stride,
                                               padding=1, groups=groups // k))
    result['unfold-matmul'] = lambda x, w: unfold_matmul(x, w, groups, stride)
    return result


def seconds(step: Callable) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def measure_shape(shape: ConvShape, merges: Sequence[int], repeats: int) -> List[dict]:
    """Times every formulation of one conv shape (forward, forward + backward), round-robin."""
    (n, channels, height, width), out_channels, groups, stride = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, channels, height, width, generator=gen)
    weight = torch.randn(out_channels, channels // groups, 3, 3, generator=gen) * 0.1
    funcs = formulations(groups, stride, merges)
    reference = funcs['onednn'](x, weight)
    scale = reference.abs().max().item()
    x_grad = x.clone().requires_grad_()
    w_grad = weight.clone().requires_grad_()

    def forward(func):
        with torch.no_grad():
            return func(x, weight)

    def forward_backward(func):
        func(x_grad, w_grad).sum().backward()
        x_grad.grad = w_grad.grad = None

    rows = {name: dict(rel_diff=(forward(f) - reference).abs().max().item() / scale,
                       forward=[], train=[]) for name, f in funcs.items()}
    for func in funcs.values():  # warm-up
        forward(func)
        forward_backward(func)
    for _ in range(repeats):
        for name, func in funcs.items():
            rows[name]['forward'].append(seconds(lambda: forward(func)))
            rows[name]['train'].append(seconds(lambda: forward_backward(func)))
    out_h, out_w = reference.shape[2:]
    gmac = n * out_channels * out_h * out_w * (channels // groups) * 9 / 1e9
    base_fwd = statistics.median(rows['onednn']['forward'])
    base_train = statistics.median(rows['onednn']['train'])
    result = []
    for name, row in rows.items():
        fwd = statistics.median(row['forward'])
        train = statistics.median(row['train'])
        result.append(dict(formulation=name, forward_ms=fwd * 1e3, train_ms=train * 1e3,
                           gmac_per_s=gmac / fwd, forward_speed=base_fwd / fwd,
                           train_speed=base_train / train, rel_diff=row['rel_diff']))
    return result


def shape_label(shape: ConvShape, layers: int) -> str:
    (n, channels, height, width), out_channels, groups, stride = shape
    return (f'{channels}->{out_channels} ch, {groups} groups ({channels // groups} ch/group), '
            f's{stride}, input {n}x{channels}x{height}x{width}, {layers} layer(s)')


def print_table(label: str, rows: Sequence[dict]) -> None:
    print(f'\n{label}')
    print('| formulation | fwd ms | fwd GMAC/s | x onednn fwd | fwd+bwd ms | x onednn fwd+bwd '
          '| rel. diff |')
    print('|---|---|---|---|---|---|---|')
    for row in rows:
        print(f"| {row['formulation']} | {row['forward_ms']:.1f} | {row['gmac_per_s']:.1f} | "
              f"{row['forward_speed']:.2f} | {row['train_ms']:.1f} | {row['train_speed']:.2f} | "
              f"{row['rel_diff']:.1e} |")


def backbone_of(config: str) -> nn.Module:
    from mmdet.registry import MODELS
    cfg = load_config(config)
    return MODELS.build(cfg.model.backbone)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', default=list(DEFAULT_CONFIGS), metavar='CONFIG')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=300)
    parser.add_argument('--threads', type=int, default=None, help="default: PyTorch's")
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--merge', default='2,4', help='comma-separated K of merge-K')
    args = parser.parse_args(argv)
    try:
        args.merge = [int(k) for k in args.merge.split(',') if k]
    except ValueError:
        raise ToolError(f'--merge takes comma-separated integers, not {args.merge!r}') from None
    missing = [c for c in args.configs if not os.path.isfile(c)]
    if missing:
        raise ToolError(f'config not found: {missing[0]} (give a path to a .py config)')
    if args.batch < 1 or args.size < 32 or args.repeats < 1:
        raise ToolError('needs --batch >= 1, --size >= 32, --repeats >= 1')
    if args.threads is not None and args.threads < 1:
        raise ToolError(f'--threads {args.threads}: give 1 or more')
    if any(k < 2 for k in args.merge):
        raise ToolError(f'--merge {args.merge}: merge-K needs K >= 2')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, '
          f'{args.size}x{args.size}; medians of {args.repeats} round-robin rounds')
    shapes = {config: grouped_conv_shapes(backbone_of(config), args.batch, args.size)
              for config in args.configs}
    if not any(shapes.values()):
        raise ToolError('the backbones of these configs have no grouped 3x3 convs')
    for config, found in shapes.items():
        print(f'\n{os.path.basename(config)}: {len(found)} distinct grouped 3x3 conv(s)')
        for shape, layers in found.items():
            print_table(shape_label(shape, layers), measure_shape(shape, args.merge, args.repeats))
    return 0


if __name__ == '__main__':
    run_main(main)
