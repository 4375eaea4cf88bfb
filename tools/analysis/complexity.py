"""Parameters and FLOPs of configs or architectures, in labelled conventions, without data.

Examples::

    # one config, both conventions, input from the config (300x300 for SSD300)
    python tools/analysis/complexity.py configs/ssd300/ssd300_iresnet50_8xb32-65e_coco.py
    # the ImageNet form of an architecture at 224x224
    python tools/analysis/complexity.py iresnet50 --shape 224
    # a CIFAR network (32x32, 100 classes) and a video network (16x224x224 clips)
    python tools/analysis/complexity.py cifar_iresnet3002 --num-classes 100
    python tools/analysis/complexity.py iresnet3d50 --shape 16 224 224
    # the paper's tables (all configs/ssd300/*.py at 300, the paper's ImageNet models at 224,
    # its CIFAR models at 32, its video models at 16x224x224)
    python tools/analysis/complexity.py --table
    # a markdown table of chosen targets
    python tools/analysis/complexity.py --table configs/ssd300/ssd300_r50_8xb32-65e_coco.py resnet50

Conventions (see iresnet_mmdet/analysis/complexity.py for the exact rules):
    paper  "GFLOPs": the op count of thop 0.0.23 (mid-2019), the counter of the paper's tables.
    paper-cifar  "GFLOPs (paper CIFAR counter)": the same rules, every call of a module counted
           (each ReLU application), the counter of the paper's CIFAR table.
    macs   "GMACs": multiply-accumulates of conv + linear layers (mmengine/fvcore; what mmdet's
           get_flops.py prints as "Flops"). 1 MAC is about 2 FLOPs.
"""
import argparse
import glob
import os.path as osp
import sys

from iresnet_mmdet.analysis.complexity import CONVENTIONS, complexity_rows, markdown_table

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The paper's SSD300 table order, then our extra configs.
SSD300_ORDER = ('r50', 'iresnet50', 'iresgroupfix50', 'iresgroup50', 'r101', 'iresnet101',
                'iresgroupfix101', 'iresgroup101', 'resstage50', 'resgroup50', 'resgroupfix50',
                'preactresnet50')
IMAGENET_ARCHS = ('resnet50', 'iresnet50', 'resgroupfix50', 'resgroup50', 'iresgroupfix50',
                  'iresgroup50', 'iresnet302', 'iresnet404')
CIFAR_ARCHS = tuple(f'cifar_{family}{depth}' for depth in (164, 1001, 2000, 3002)
                    for family in ('resnet', 'iresnet'))
VIDEO_ARCHS = ('resnet3d50', 'iresnet3d50')


def ssd300_rank(path):
    """Sort key of a configs/ssd300 file: the paper's row order, unknown configs last."""
    arch = osp.basename(path).split('_')[1]
    return (SSD300_ORDER.index(arch) if arch in SSD300_ORDER else len(SSD300_ORDER), path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs (paper counter) / MACs (conv+linear) of configs or '
        'architectures, without any dataset.')
    parser.add_argument('targets', nargs='*',
                        help='config files (.py) or architecture names (e.g. iresnet50)')
    parser.add_argument('--shape', type=int, nargs='+', metavar='SIZE',
                        help='input H [W], or T H W for a video network; default: the config '
                        'input_size (300), 224 for ImageNet names, 32 for CIFAR names '
                        '(cifar_iresnet164), 16 224 224 for video names (iresnet3d50)')
    parser.add_argument('--num-classes', type=int,
                        help='classes of architecture names; default: their dataset\'s (1000, '
                        'CIFAR 10, video 400)')
    parser.add_argument('--convention', choices=sorted(CONVENTIONS) + ['both'], default='both',
                        help='what to count (single-target mode); default (\'both\'): every '
                        'convention')
    parser.add_argument('--table', action='store_true',
                        help='print one markdown table (paper columns); with no targets: every '
                        'configs/ssd300/*.py and the paper\'s ImageNet models')
    args = parser.parse_args(argv)
    if not args.table and not args.targets:
        parser.error('give at least one config or architecture name, or --table')
    if args.shape and len(args.shape) > 3:
        parser.error('--shape takes H, H W, or T H W')
    return args


def input_shape(shape):
    if not shape:
        return None
    if len(shape) == 3:
        return (3, *shape)
    return (3, shape[0], shape[-1])


def print_single(target, shape, conventions, num_classes=None):
    row = complexity_rows([target], shape, num_classes)[0]
    print(f'{target}: {row["name"]}, input {row["input_shape"]}')
    print(f'  params: {row["params"] / 1e6:.3f} M ({row["params"]})')
    totals = {'paper': row['paper_flops'], 'paper-cifar': row['paper_cifar_flops'],
              'macs': row['macs']}
    for conv in conventions:
        unit, description = CONVENTIONS[conv]
        print(f'  [{conv}] G{unit}: {totals[conv] / 1e9:.3f}  ({description})')
    if row['uncounted']:
        print(f'  note: no rule for {row["uncounted"]}, counted as 0')
    if row['unused_params']:
        print(f'  note: {row["unused_params"]} parameters belong to modules never called')


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, KeyError, ValueError, TypeError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'complexity.py: error: {message}', file=sys.stderr)
        return 2


def run(args):
    shape = input_shape(args.shape)
    if args.table:
        if args.targets:
            print(markdown_table(complexity_rows(args.targets, shape, args.num_classes)))
        else:
            configs = glob.glob(osp.join(ROOT, 'configs', 'ssd300', '*.py'))
            rel = sorted((osp.relpath(c) for c in configs), key=ssd300_rank)
            print(markdown_table(complexity_rows(rel, shape)))
            print()
            print(markdown_table(complexity_rows(IMAGENET_ARCHS, shape)))
            print()
            print(markdown_table(complexity_rows(CIFAR_ARCHS, shape, 10) +
                                 complexity_rows(CIFAR_ARCHS, shape, 100)))
            print()
            print(markdown_table(complexity_rows(VIDEO_ARCHS, shape, 400) +
                                 complexity_rows(VIDEO_ARCHS, shape, 174)))
        print('\nGFLOPs (paper counter): thop 0.0.23 (mid-2019) op count, the convention of the '
              'paper\'s ImageNet, SSD300 and video tables; GFLOPs (paper CIFAR counter): the same '
              'rules with every call counted (each ReLU application), the convention of its CIFAR '
              'table; GMACs: conv+linear multiply-accumulates (mmengine/fvcore).')
        return 0
    conventions = list(CONVENTIONS) if args.convention == 'both' else [args.convention]
    for target in args.targets:
        print_single(target, shape, conventions, args.num_classes)
    return 0


if __name__ == '__main__':
    sys.exit(main())
