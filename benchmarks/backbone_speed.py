"""Forward time of the iRes* backbones against mmdet's ResNet-50 and ResNeXt-50, next to MACs.

For each backbone it prints the median forward time (eval mode, no grad) and the multiply-accumulates
of its convs, both as ratios to ResNet-50. A variant is "on target" when its time ratio is at most
1.05 x its MAC ratio, i.e. it runs as fast per MAC as mmdet's ResNet-50 within 5 %.

Usage::

    .venv/bin/python benchmarks/backbone_speed.py [--size 224] [--batch 8] [--repeats 10]
        [--channels-last] [--threads N]
"""
import argparse
import statistics
import time

import torch

import iresnet_mmdet  # noqa: F401  (registers the backbones)
from iresnet_mmdet.analysis.complexity import model_complexity
from mmdet.registry import MODELS

BACKBONES = {
    'ResNet-50 (mmdet)': dict(type='ResNet', depth=50),
    'ResNeXt-50 32x4d (mmdet)': dict(type='ResNeXt', depth=50, groups=32, base_width=4),
    'iResNet-50': dict(type='iResNet', depth=50),
    'iResGroup-50': dict(type='iResGroup', depth=50),
    'iResGroupFix-50': dict(type='iResGroupFix', depth=50),
}


def time_forwards(models, x, repeats):
    """Median forward time of each model, measured round-robin so that load changes on the
    machine affect every model alike."""
    times = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            model(x)
        for _ in range(repeats):
            for model, samples in zip(models, times):
                start = time.perf_counter()
                model(x)
                samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=memory_format)
    models, macs = [], []
    for cfg in BACKBONES.values():
        model = MODELS.build(cfg)
        model.eval()  # mmdet's ResNet.train() returns None, so no chaining
        model.to(memory_format=memory_format)
        models.append(model)
        macs.append(model_complexity(model, (3, args.size, args.size), convention='macs')['flops'])
    rows = list(zip(BACKBONES, time_forwards(models, x, args.repeats), macs))
    base_time, base_macs = rows[0][1], rows[0][2]
    print(f'input {args.batch}x3x{args.size}x{args.size}, {torch.get_num_threads()} threads, '
          f'channels_last={args.channels_last}, median of {args.repeats}')
    print('| backbone | GMACs | time (ms) | MAC ratio | time ratio | time / MAC ratio | on target |')
    print('|---|---|---|---|---|---|---|')
    for name, seconds, macs in rows:
        mac_ratio, time_ratio = macs / base_macs, seconds / base_time
        ok = 'yes' if time_ratio <= 1.05 * mac_ratio else 'NO'
        print(f'| {name} | {macs / 1e9:.3f} | {seconds * 1e3:.1f} | {mac_ratio:.3f} | '
              f'{time_ratio:.3f} | {time_ratio / mac_ratio:.3f} | {ok} |')


if __name__ == '__main__':
    main()
