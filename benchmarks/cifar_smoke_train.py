"""Training smoke run of the extreme-depth CIFAR networks on generated 32x32 data.

Trains each architecture for a few dozen SGD steps on a generated, learnable 10-class problem (each
class is a smooth random colour pattern, each image that pattern plus noise) and prints the loss
curve: does the 3002-layer iResNet start learning, and does the 3002-layer baseline ResNet?
The recipe is the paper's CIFAR one (SGD, momentum 0.9, weight decay 1e-4, lr 0.1 for a batch of
128, scaled linearly to the batch used) with He et al.'s warm-up for very deep nets (a tenth of the
lr for the first steps), with_cp on (activation checkpointing), the authors' initialisation.

Usage::

    .venv/bin/python benchmarks/cifar_smoke_train.py [--depth 3002] [--archs iresnet resnet]
        [--steps 40] [--batch 32] [--no-cp] [--threads 1] [--json out.json]

On a shared machine, ``--threads 1`` avoids the slowdown of OpenMP threads waiting for each other.
"""
import argparse
import ctypes
import gc
import json
import logging
import math
import os
import resource
import time

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet.atomic import check_output, write_output
from iresnet_mmdet.errors import ToolError, check_range, run_main
from iresnet_mmdet.models import build_classifier

NAMES = dict(iresnet='iResNet', resnet='ResNet')


def make_dataset(num_images: int, num_classes: int = 10, noise: float = 0.5,
                 seed: int = 0):
    """A learnable 32x32 problem: class ``c`` = a smooth random pattern ``P_c`` + noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(torch.randn(num_classes, 3, 4, 4, generator=g), size=32,
                             mode='bilinear', align_corners=False)
    labels = torch.arange(num_images) % num_classes
    images = patterns[labels] + noise * torch.randn(num_images, 3, 32, 32, generator=g)
    order = torch.randperm(num_images, generator=g)
    return images[order], labels[order]


def current_rss() -> float:
    """Resident memory of this process now, in GiB."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30


def release_memory() -> None:
    """Give the freed memory of a finished run back to the system (glibc keeps it otherwise,
    and the next network's run would look bigger than it is)."""
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def learning_rate(step: int, args) -> float:
    lr = args.lr if args.lr is not None else 0.1 * args.batch / 128
    return lr / 10 if step < args.warmup_steps else lr


def train(arch: str, data, args) -> dict:
    """Train one architecture; return its per-step losses, accuracies and times."""
    torch.manual_seed(args.seed)
    model = build_classifier(f'cifar_{arch}{args.depth}', num_classes=10,
                             with_cp=not args.no_cp, cp_blocks=args.cp_blocks)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter (9000 of them)
    model.init_weights()
    logger.setLevel(level)
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=learning_rate(0, args), momentum=0.9, weight_decay=1e-4)
    images, labels = data
    losses, accs, times, rss = [], [], [], []
    for step in range(args.steps):
        start = (step * args.batch) % len(images)
        x, y = images[start:start + args.batch], labels[start:start + args.batch]
        for group in optimizer.param_groups:
            group['lr'] = learning_rate(step, args)
        t0 = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        accs.append((logits.argmax(1) == y).float().mean().item())
        rss.append(current_rss())
        print(f'{NAMES[arch]}-{args.depth} step {step + 1:3d}/{args.steps} '
              f'lr {learning_rate(step, args):.4f} loss {losses[-1]:8.4f} '
              f'batch acc {accs[-1]:.2f} ({times[-1]:.1f} s, {rss[-1]:.2f} GiB)', flush=True)
    return dict(arch=arch, depth=args.depth, losses=losses, accs=accs, step_s=times,
                rss_gib=rss)


def summary(result: dict, window: int, num_classes: int = 10) -> str:
    """One markdown row: loss at the start and the end, worst loss, accuracy, verdict.

    The verdict compares the end with chance (``ln(num_classes)``, the loss of uniform
    predictions), not with the start: a network whose initial loss is far above chance can fall a
    long way and still have learnt nothing.
    """
    losses, accs = result['losses'], result['accs']
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    chance = math.log(num_classes)
    if not all(math.isfinite(loss) for loss in losses):
        verdict = 'diverged (non-finite loss)'
    elif last < 0.9 * chance:
        verdict = f'falls below chance (x{last / chance:.2f} of ln {num_classes})'
    else:
        verdict = f'not below chance (x{last / chance:.2f} of ln {num_classes})'
    return (f"| {NAMES[result['arch']]}-{result['depth']} | {first:.2f} | {max(losses):.2f} "
            f"| {last:.2f} | {sum(accs[-window:]) / window:.2f} | {verdict} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--depth', type=int, default=3002)
    parser.add_argument('--archs', nargs='+', choices=sorted(NAMES), default=['iresnet', 'resnet'])
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--images', type=int, default=400, help='size of the generated set')
    parser.add_argument('--lr', type=float,
                        help='learning rate after the warm-up; default: 0.1 x batch / 128')
    parser.add_argument('--warmup-steps', type=int, default=5,
                        help='steps at a tenth of the learning rate')
    parser.add_argument('--no-cp', action='store_true', help='train without with_cp')
    parser.add_argument('--cp-blocks', type=int, default=1, help='blocks per checkpoint')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s choice)')
    parser.add_argument('--json', help='write the curves to this file')
    args = parser.parse_args(argv)
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = make_dataset(args.images, seed=args.seed)
    results = []
    for arch in args.archs:
        results.append(train(arch, data, args))
        release_memory()
    window = max(1, min(5, args.steps // 3))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f'\n# {args.depth} layers, batch {args.batch}, {args.steps} steps, '
          f'with_cp={not args.no_cp}; memory after a step, at most: '
          + ', '.join(f"{NAMES[r['arch']]} {max(r['rss_gib']):.2f} GiB" for r in results)
          + f'; process peak {peak:.2f} GiB')
    print(f'| Network | Mean loss, first {window} steps | Highest loss '
          f'| Mean loss, last {window} steps | Batch accuracy, last {window} steps | Verdict |')
    print('|---|---|---|---|---|---|')
    for result in results:
        print(summary(result, window))
    if args.json:  # printed above: a failed write loses nothing
        curves = dict(args=vars(args), results=results)
        write_output(args.json, lambda tmp: _write_json(tmp, curves), ToolError)
    return 0


def check_args(args):
    """Numeric options in range and the --json file writable, before the work."""
    for option, low in (('--steps', 1), ('--batch', 1), ('--images', 1), ('--warmup-steps', 0),
                        ('--cp-blocks', 1), ('--threads', 1)):
        check_range(option, getattr(args, option[2:].replace('-', '_')), low)
    if args.lr is not None and not args.lr > 0:
        raise ToolError(f'--lr {args.lr:g}: give a positive learning rate')
    check_output(args.json, '--json', ToolError)


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


if __name__ == '__main__':
    run_main(main)
