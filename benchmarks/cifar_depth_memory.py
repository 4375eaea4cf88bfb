"""Peak memory and time of one training step of the extreme-depth CIFAR nets, with/without with_cp.

For each depth and checkpointing mode a fresh subprocess builds the CIFAR classifier, runs one
training step (forward, cross-entropy, backward, SGD update) on a random batch of 32x32 images and
reports its peak resident memory (``ru_maxrss``: what the step really needed from the machine, the
~0.4 GiB of Python, PyTorch and the model included), the step's wall time and its CPU time (user +
system, all threads: on a shared machine the wall time grows with the other jobs' load, the CPU time
much less). Modes:

* ``none``: no checkpointing, every activation is kept for the backward pass;
* ``block``: ``with_cp=True``, mmdet's per-block checkpointing (each block keeps only its input);
* ``sqrt``: ``with_cp=True, cp_blocks=k`` with ``k ~ sqrt(blocks per stage)`` (keeps one input per
  run of k blocks and recomputes one run at a time).

Before a run, its peak is estimated from the smaller depths already measured in the same mode
(activation memory grows linearly with the blocks, like ``sqrt(blocks)`` in ``sqrt`` mode); a run
estimated above ``--max-gib`` (or above the machine's available memory) is skipped with a message.

Usage::

    .venv/bin/python benchmarks/cifar_depth_memory.py [--arch iresnet|resnet]
        [--depths 164 1001 3002] [--modes none block] [--batch 64] [--max-gib 12] [--threads N]

On a shared machine, ``--threads 1`` avoids the slowdown of OpenMP threads waiting for each other
on busy cores.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

GIB = 2**30


def current_rss() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / GIB


def available_gib() -> float:
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) / 2**20
    return float('inf')


def cp_kwargs(mode: str, stage_blocks) -> dict:
    if mode == 'none':
        return dict(with_cp=False)
    if mode == 'block':
        return dict(with_cp=True)
    return dict(with_cp=True, cp_blocks=max(1, round(math.sqrt(max(stage_blocks)))))


def child(args) -> None:
    """One configuration in this (fresh) process; prints one JSON line."""
    import torch
    import torch.nn.functional as F

    import iresnet_mmdet  # noqa: F401
    from iresnet_mmdet.models import build_classifier
    from iresnet_mmdet.models.backbones.variants import CIFAR_DEPTHS
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kwargs = cp_kwargs(args.mode, CIFAR_DEPTHS[args.depth][1])
    model = build_classifier(f'cifar_{args.arch}{args.depth}', num_classes=10, **kwargs).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch, ))
    before = current_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    loss = F.cross_entropy(model(x), y)
    forward = time.perf_counter() - start
    loss.backward()
    optimizer.step()
    step, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(json.dumps(dict(peak_gib=peak, before_gib=before, step_s=step, forward_s=forward,
                          cpu_s=cpu, loss=loss.item(), cp_blocks=kwargs.get('cp_blocks', 1),
                          threads=torch.get_num_threads())))


def estimate_peak(measured: dict, mode: str, blocks: int):
    """Peak of an unmeasured depth from the largest measured depth of the same mode."""
    if not measured:
        return None
    ref_blocks, ref = max(measured.items())
    scale = blocks / ref_blocks
    if mode == 'sqrt':
        scale = math.sqrt(scale)
    return ref['before_gib'] + (ref['peak_gib'] - ref['before_gib']) * scale


def run_one(args, depth: int, mode: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--arch', args.arch, '--depth',
           str(depth), '--mode', mode, '--batch', str(args.batch)]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return dict(error=f'exit code {proc.returncode}: ' + ' | '.join(tail))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', choices=['iresnet', 'resnet'], default='iresnet')
    parser.add_argument('--depths', type=int, nargs='+', default=[164, 1001, 3002])
    parser.add_argument('--modes', nargs='+', choices=['none', 'block', 'sqrt'],
                        default=['none', 'block'])
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--max-gib', type=float, default=12.0,
                        help='skip a run whose estimated peak memory is above this (GiB)')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s choice)')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--depth', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--mode', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    from iresnet_mmdet.errors import check_range
    check_range('--batch', args.batch, 1)
    check_range('--max-gib', args.max_gib, 0.01)
    check_range('--threads', args.threads, 1)

    from iresnet_mmdet.models.backbones.variants import CIFAR_DEPTHS
    unknown = sorted(set(args.depths) - set(CIFAR_DEPTHS))
    if unknown:
        parser.error(f'unknown depth(s) {unknown}; choose from {sorted(CIFAR_DEPTHS)}')
    name = dict(iresnet='iResNet', resnet='ResNet')[args.arch]
    print(f'# {name}-<depth> (CIFAR), one training step, batch {args.batch}, 32x32, SGD; '
          f'{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start', flush=True)
    print('| Depth | Checkpointing | Peak memory (GiB) | Step wall time (s) | of which forward (s) '
          '| Step CPU time (s) |')
    print('|---|---|---|---|---|---|', flush=True)
    measured = {mode: {} for mode in args.modes}
    for depth in sorted(args.depths):
        blocks = sum(CIFAR_DEPTHS[depth][1])
        for mode in args.modes:
            kwargs = cp_kwargs(mode, CIFAR_DEPTHS[depth][1])
            label = {'none': 'none', 'block': 'with_cp (every block)'}.get(
                mode, f'with_cp, cp_blocks={kwargs.get("cp_blocks")}')
            estimate = estimate_peak(measured[mode], mode, blocks)
            limit = min(args.max_gib, available_gib())
            if estimate is not None and estimate > limit:
                print(f'| {depth} | {label} | skipped: estimated {estimate:.1f} > {limit:.1f} '
                      f'GiB | - | - | - |', flush=True)
                continue
            res = run_one(args, depth, mode)
            if 'error' in res:
                print(f'| {depth} | {label} | failed: {res["error"]} | - | - | - |', flush=True)
                continue
            measured[mode][blocks] = res
            print(f'| {depth} | {label} | {res["peak_gib"]:.2f} | {res["step_s"]:.1f} '
                  f'| {res["forward_s"]:.1f} | {res["cpu_s"]:.1f} |', flush=True)
    print(f'# load average {os.getloadavg()[0]:.1f} at end (wall-clock times grow with '
          'the load)')
    return 0


if __name__ == '__main__':
    from iresnet_mmdet.errors import run_main
    run_main(main)
