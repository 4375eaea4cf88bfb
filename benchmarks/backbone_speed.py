"""Forward time of the iRes* backbones against mmdet's ResNet-50 and ResNeXt-50, next to MACs.

For each backbone it prints the median forward time (eval mode, no grad) and the
multiply-accumulates of its convs, both as ratios to mmdet's ResNet-50. A variant is "on target"
when its time ratio is at most 1.05 x its MAC ratio, i.e. it runs as fast per MAC as ResNet-50
within 5 %. The grouped variants are also compared with mmdet's ResNeXt-50, the reference network
built from the same grouped convolutions. ``--breakdown`` adds where the time goes: milliseconds
and GMAC/s per kind of layer; ``--runs N`` repeats the measurement in N fresh processes.

The models are timed round-robin, so that load changes on the machine affect them alike.

Allocator: glibc returns freed blocks above its mmap threshold (at most 32 MiB) to the system, so
every large activation is page-faulted in again on the next forward. That adds a cost per BN layer
and, above all, per 51 MB activation, which only the iResGroup networks have at batch 4 (256
channels at 112x112: iResNet has no stem max-pool); it can also make their times bimodal from one
process to the next. To measure kernels rather than page faults, the script re-runs itself under a
caching allocator (``--malloc``):

* ``auto`` (default): ``tcmalloc`` if its library is installed, else ``glibc-tuned``;
* ``tcmalloc``: ``LD_PRELOAD`` of libtcmalloc_minimal (Debian: ``apt-get install
  libtcmalloc-minimal4``), as the PyTorch CPU performance tuning guide recommends;
* ``glibc-tuned``: glibc with its mmap threshold at the maximum (32 MiB) and no heap trimming;
  larger blocks are still page-faulted;
* ``system``: the allocator as it is.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/backbone_speed.py [--size 224]
        [--batch 4] [--repeats 10] [--runs N] [--channels-last] [--threads N] [--breakdown]
        [--malloc auto|tcmalloc|glibc-tuned|system]
"""
import argparse
import collections
import ctypes.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

import torch
import torch.nn as nn

import iresnet_mmdet  # noqa: F401  (registers the backbones)
from iresnet_mmdet.analysis.complexity import model_complexity
from iresnet_mmdet.atomic import write_atomic
from iresnet_mmdet.errors import ToolError, check_range, run_main
from iresnet_mmdet.models import zoo
from mmdet.registry import MODELS

RESNET = 'ResNet-50 (mmdet)'
RESNEXT = 'ResNeXt-50 32x4d (mmdet)'
#: The paper's improved networks: its full design (stage layout and improved shortcut), ImageNet.
IMPROVED = [f for f in zoo.FAMILIES if f.setting == 'imagenet' and
            getattr(MODELS.get(f.backbone_type), 'default_shortcut', None) == 'pool']
BACKBONES = {
    RESNET: dict(type='ResNet', depth=50),
    RESNEXT: dict(type='ResNeXt', depth=50, groups=32, base_width=4),
    **{f.name(50): dict(type=f.backbone_type, depth=50) for f in IMPROVED},
}
GROUPED = tuple(f.name(50) for f in IMPROVED
                if MODELS.get(f.backbone_type).arch_settings[50][0] == 'group')
TARGET = 1.05
#: glibc: keep freed blocks up to 32 MiB (the largest mmap threshold) on the heap, never trim it.
MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184'
#: Set in the environment of the re-run process: the allocator it runs under.
MALLOC_ENV = 'BACKBONE_SPEED_MALLOC'


def allocator_env(choice: str, environ: dict, tcmalloc: Optional[str],
                  glibc: bool) -> Optional[dict]:
    """The environment to re-run under for the allocator ``choice`` (see the module docstring),
    or ``None`` to run as is (``system``, no glibc to tune, or the re-run has happened already).

    Args:
        choice: ``auto``, ``tcmalloc``, ``glibc-tuned`` or ``system``.
        environ: the current environment.
        tcmalloc: path of the TCMalloc library found, or ``None``.
        glibc: whether this process runs on glibc.
    """
    if choice == 'system' or MALLOC_ENV in environ:
        return None
    if choice == 'auto':
        choice = 'tcmalloc' if tcmalloc else 'glibc-tuned'
    env = dict(environ)
    if choice == 'tcmalloc':
        if not tcmalloc:
            raise ToolError('--malloc tcmalloc, but no TCMalloc library was found; install it '
                            '(Debian: apt-get install libtcmalloc-minimal4) or use --malloc '
                            'glibc-tuned')
        env['LD_PRELOAD'] = ' '.join(filter(None, [tcmalloc, environ.get('LD_PRELOAD')]))
        env[MALLOC_ENV] = f'tcmalloc ({tcmalloc})'
        return env
    if not glibc:
        return None
    env['GLIBC_TUNABLES'] = ':'.join(filter(None, [environ.get('GLIBC_TUNABLES'), MALLOC_TUNABLES]))
    env[MALLOC_ENV] = f'glibc-tuned (GLIBC_TUNABLES={env["GLIBC_TUNABLES"]})'
    return env


def rerun_with_allocator(choice: str) -> None:
    """Replace this process by the same command under the allocator ``choice``, if needed."""
    tcmalloc = ctypes.util.find_library('tcmalloc_minimal') or ctypes.util.find_library('tcmalloc')
    glibc = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'
    env = allocator_env(choice, dict(os.environ), tcmalloc, glibc)
    if env is not None:
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def time_forwards(models, x, repeats):
    """Median forward time of each model, measured round-robin."""
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


def layer_kind(module: nn.Module) -> str:
    """A short name for the kind of a leaf layer (convs by kernel, stride and group width)."""
    if isinstance(module, nn.Conv2d):
        kind = f'conv {module.kernel_size[0]}x{module.kernel_size[1]} s{module.stride[0]}'
        if module.groups > 1:
            kind += f' grouped ({module.in_channels // module.groups} ch/group)'
        return kind
    return type(module).__name__


def breakdown(model, x, repeats):
    """{layer kind: (milliseconds, MACs)} of one forward: each leaf layer's fastest of
    ``repeats`` forwards, timed with hooks, summed per kind."""
    seconds = collections.defaultdict(lambda: float('inf'))
    macs, starts, handles = {}, {}, []

    def before(module, args):
        starts[module] = time.perf_counter()

    def after(module, args, out):
        seconds[module] = min(seconds[module], time.perf_counter() - starts[module])
        if isinstance(module, nn.Conv2d):
            macs[module] = out.numel() * module.weight[0].numel()

    for module in model.modules():
        if next(module.children(), None) is None:
            handles += [module.register_forward_pre_hook(before),
                        module.register_forward_hook(after)]
    with torch.no_grad():
        for _ in range(repeats):
            model(x)
    for handle in handles:
        handle.remove()
    kinds = collections.defaultdict(lambda: [0.0, 0])
    for module, s in seconds.items():
        totals = kinds[layer_kind(module)]
        totals[0] += s * 1e3
        totals[1] += macs.get(module, 0)
    return dict(kinds)


def print_breakdown(name, kinds, total_ms):
    print(f'\n{name}: {total_ms:.1f} ms per forward, of which in leaf layers '
          f'{sum(ms for ms, _ in kinds.values()):.1f} ms')
    print('| layer kind | ms | GMACs | GMAC/s |')
    print('|---|---|---|---|')
    for kind, (ms, macs) in sorted(kinds.items(), key=lambda item: -item[1][0]):
        rate = f'{macs / ms / 1e6:.0f}' if macs else '-'
        gmacs = f'{macs / 1e9:.2f}' if macs else '-'
        print(f'| {kind} | {ms:.1f} | {gmacs} | {rate} |')


def print_ratios(rows, base):
    base_seconds, base_macs = rows[base]
    print('| backbone | GMACs | time (ms) | MAC ratio | time ratio | time / MAC ratio '
          '| on target |')
    print('|---|---|---|---|---|---|---|')
    for name, (seconds, macs) in rows.items():
        mac_ratio, time_ratio = macs / base_macs, seconds / base_seconds
        ok = 'yes' if time_ratio <= TARGET * mac_ratio else 'NO'
        print(f'| {name} | {macs / 1e9:.3f} | {seconds * 1e3:.1f} | {mac_ratio:.3f} | '
              f'{time_ratio:.3f} | {time_ratio / mac_ratio:.3f} | {ok} |')


def ratio_summary(runs, name, base):
    """'median (min-max)' of ``name``'s time / MAC ratio against ``base`` over several runs."""
    ratios = sorted((r[name][0] / r[base][0]) / (r[name][1] / r[base][1]) for r in runs)
    median = statistics.median(ratios)
    return median, f'{median:.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f})'


def print_run_summary(runs):
    """Per backbone: the median and range of its time / MAC ratios over the runs."""
    print(f'| backbone | GMACs | time / MAC ratio vs {RESNET}: median (range) | on target (median) '
          f'| vs {RESNEXT}: median (range) |')
    print('|---|---|---|---|---|')
    for name, (_, macs) in runs[0].items():
        median, text = ratio_summary(runs, name, RESNET)
        vs_resnext = ratio_summary(runs, name, RESNEXT)[1] if name in GROUPED else '-'
        ok = 'yes' if median <= TARGET else 'NO'
        print(f'| {name} | {macs / 1e9:.3f} | {text} | {ok} | {vs_resnext} |')


def measure(args):
    """Build the backbones and time them: ({name: (seconds, MACs)}, models, input)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=memory_format)
    models, macs = [], []
    for cfg in BACKBONES.values():
        model = MODELS.build(cfg)
        model.eval()  # mmdet's ResNet.train() returns None, so no chaining
        model.to(memory_format=memory_format)
        models.append(model)
        macs.append(model_complexity(model, (3, args.size, args.size), convention='macs')['flops'])
    seconds = time_forwards(models, x, args.repeats)
    return {name: (s, m) for name, s, m in zip(BACKBONES, seconds, macs)}, models, x


def measure_in_processes(args):
    """Run the measurement in ``args.runs`` fresh processes (their environment, hence their
    allocator, is this process's); their results, in order."""
    command = [sys.executable, os.path.abspath(__file__), '--size', str(args.size), '--batch',
               str(args.batch), '--repeats', str(args.repeats)]
    if args.channels_last:
        command.append('--channels-last')
    if args.threads:
        command += ['--threads', str(args.threads)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            result = os.path.join(tmp, f'run{i}.json')
            subprocess.run(command + ['--result-file', result], check=True,
                           stdout=subprocess.DEVNULL)
            with open(result) as f:
                runs.append({name: tuple(value) for name, value in json.load(f).items()})
            print(f'run {i + 1}/{args.runs}: ' + ', '.join(
                f'{name.split()[0]} {seconds * 1e3:.1f} ms' for name, (seconds, _) in
                runs[-1].items()), flush=True)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=10, help='timed forwards per model')
    parser.add_argument('--runs', type=int, default=1,
                        help='repeat the measurement in this many fresh processes and print the '
                        'median and range of the ratios')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--breakdown', action='store_true',
                        help='also print time and GMAC/s per kind of layer for each model')
    parser.add_argument('--malloc', choices=('auto', 'tcmalloc', 'glibc-tuned', 'system'),
                        default='auto', help='the allocator to measure under (module docstring)')
    parser.add_argument('--result-file', help=argparse.SUPPRESS)  # used by --runs
    args = parser.parse_args()
    for option, low in (('--size', 32), ('--batch', 1), ('--repeats', 1), ('--runs', 1),
                        ('--threads', 1)):
        check_range(option, getattr(args, option[2:]), low)
    rerun_with_allocator(args.malloc)
    threads = args.threads or torch.get_num_threads()
    print(f'input {args.batch}x3x{args.size}x{args.size}, {threads} threads, '
          f'channels_last={args.channels_last}, median of {args.repeats} forwards, '
          f"allocator: {os.environ.get(MALLOC_ENV, 'system')}", flush=True)
    if args.runs > 1:
        runs = measure_in_processes(args)
        print(f'\n{args.runs} runs (target: time / MAC ratio <= {TARGET}):')
        print_run_summary(runs)
        return
    rows, models, x = measure(args)
    if args.result_file:
        write_atomic(args.result_file, lambda tmp: _write_json(tmp, rows))
        return
    print(f'\nAgainst {RESNET} (target: time / MAC ratio <= {TARGET}):')
    print_ratios(rows, RESNET)
    print(f'\nThe grouped variants against {RESNEXT}:')
    print_ratios({name: rows[name] for name in (RESNEXT, ) + GROUPED}, RESNEXT)
    if args.breakdown:
        for name, model, (s, _) in zip(BACKBONES, models, rows.values()):
            print_breakdown(name, breakdown(model, x, args.repeats), s * 1e3)


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)


if __name__ == '__main__':
    run_main(main)
