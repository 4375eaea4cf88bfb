"""Parameters and FLOPs of configs or architectures, in labelled conventions, without data.

Examples::

    # one config, both conventions, input from the config (300x300 for SSD300)
    .venv/bin/python tools/analysis/complexity.py configs/ssd300/ssd300_iresnet50_8xb32-65e_coco.py
    # the ImageNet form of an architecture at 224x224
    .venv/bin/python tools/analysis/complexity.py iresnet50 --shape 224
    # a CIFAR network (32x32, 100 classes) and a video network (16x224x224 clips)
    .venv/bin/python tools/analysis/complexity.py cifar_iresnet3002 --num-classes 100
    .venv/bin/python tools/analysis/complexity.py iresnet3d50 --shape 16 224 224
    # an FPN detector at mmdet's get_flops input (1280x800), or another one
    .venv/bin/python tools/analysis/complexity.py \
        configs/faster_rcnn/faster-rcnn_iresnet50_fpn_1x_coco.py
    .venv/bin/python tools/analysis/complexity.py \
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py --shape 800 1216
    # the paper's tables (all configs/ssd300/*.py at 300, the paper's ImageNet models at 224,
    # its CIFAR models at 32, its video models at 16x224x224)
    .venv/bin/python tools/analysis/complexity.py --table
    # some of them, or the FPN detectors (ours beside mmdet's ResNet-50/101 configs, 1280x800)
    .venv/bin/python tools/analysis/complexity.py --tables ssd300 imagenet
    .venv/bin/python tools/analysis/complexity.py --tables fpn
    # a markdown table of chosen targets
    .venv/bin/python tools/analysis/complexity.py --table \
        configs/ssd300/ssd300_r50_8xb32-65e_coco.py resnet50

Two-stage detectors are counted on a fixed number of proposals (--num-proposals; default the RPN's
test_cfg.rpn.max_per_img, 1000 in mmdet's configs), so no image is needed.

Conventions (see iresnet_mmdet/analysis/counting.py for the exact rules):
    paper  "GFLOPs": the op count of thop 0.0.23 (mid-2019), the counter of the paper's tables.
    paper-cifar  "GFLOPs (paper CIFAR counter)": the same rules, every call of a module counted
           (each ReLU application), the counter of the paper's CIFAR table.
    macs   "GMACs": multiply-accumulates of conv + linear layers (mmengine/fvcore; what mmdet's
           get_flops.py prints as "Flops"). 1 MAC is about 2 FLOPs.
"""
import argparse
import glob
import os.path as osp
import re
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from iresnet_mmdet import paper  # noqa: E402
from iresnet_mmdet.analysis import (CONVENTIONS, complexity_rows, detector_table,  # noqa: E402
                                    markdown_table)
from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402
from iresnet_mmdet.models import zoo  # noqa: E402
#: The rows of the ImageNet table: the paper's networks at depth 50 and its deepest ones.
IMAGENET_ROWS = ('ResNet-50', 'iResNet-50', 'ResGroupFix-50', 'ResGroup-50', 'iResGroupFix-50',
                 'iResGroup-50', 'iResNet-302', 'iResNet-404')
IMAGENET_ARCHS = tuple(zoo.arch_of_paper_name(name) for name in IMAGENET_ROWS)
CIFAR_ARCHS = tuple(zoo.arch_of_paper_name(name, 'cifar') for name in paper.CIFAR['cifar10'])
VIDEO_ARCHS = tuple(zoo.arch_of_paper_name(name, 'video') for name in paper.VIDEO['kinetics400'])
# FPN detectors: our configs in these folders, beside mmdet's ResNet configs of the same kind.
FPN_DETECTORS = ('faster_rcnn', 'retinanet', 'mask_rcnn')
MMDET_BASELINES = {
    'faster_rcnn': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                    'mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
                    'mmdet::dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py'),
    'retinanet': ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                  'mmdet::retinanet/retinanet_r101_fpn_1x_coco.py'),
    'mask_rcnn': ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                  'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py'),
}
TABLES = ('ssd300', 'imagenet', 'cifar', 'video', 'fpn')
PAPER_TABLES = TABLES[:4]
CIFAR_COLUMN = 'GFLOPs (paper CIFAR counter)'
LEGEND = {
    # {cifar}: the CIFAR counter's sentence, only where a table has its column (paper_legend)
    'paper': 'GFLOPs (paper counter): thop 0.0.23 (mid-2019) op count, the convention of the '
             'paper\'s ImageNet, SSD300 and video tables; {cifar}GMACs: conv+linear '
             'multiply-accumulates (mmengine/fvcore).',
    'cifar': CIFAR_COLUMN + ': the same rules with every call counted (each ReLU application), '
             'the convention of its CIFAR table; ',
    'fpn': 'GMACs: conv+linear multiply-accumulates (mmengine/fvcore, what mmdet\'s get_flops.py '
           'prints as "Flops") at mmdet\'s 1280x800 input; two-stage detectors on the RPN\'s '
           'maximum of proposals (test_cfg.rpn.max_per_img, 1000; the mask head on the first '
           '100), deformable convs as the conv they compute plus their offset conv.',
}


def fpn_rank(path):
    """Sort key of an FPN detector config: kind, DCN last, depth, mmdet's baseline first."""
    folder = osp.basename(osp.dirname(path.split('::')[-1]))
    kind = FPN_DETECTORS.index('faster_rcnn' if folder == 'dcn' else folder)
    arch = (osp.basename(path).split('_') + [''])[1]
    digits = re.search(r'\d+', arch)
    depth = int(digits.group()) if digits else 0
    return (kind, 'dconv' in arch, depth, not path.startswith('mmdet::'), path)


def fpn_configs():
    """Our FPN detector configs and mmdet's ResNet-50/101 configs of the same detectors."""
    ours = [osp.relpath(c) for kind in FPN_DETECTORS
            for c in glob.glob(osp.join(ROOT, 'configs', kind, '*.py'))]
    baselines = [c for kind in FPN_DETECTORS for c in MMDET_BASELINES[kind]]
    return sorted(ours + baselines, key=fpn_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs (paper counter) / MACs (conv+linear) of configs or '
        'architectures, without any dataset.')
    parser.add_argument('targets', nargs='*',
                        help='config files (.py) or architecture names (e.g. iresnet50)')
    parser.add_argument('--shape', type=int, nargs='+', metavar='SIZE',
                        help='input H [W], or T H W for a video network; default: the config '
                        'input_size (300) for SSD, 1280 800 for other detectors (mmdet\'s '
                        'get_flops), 224 for ImageNet names, 32 for CIFAR names '
                        '(cifar_iresnet164), 16 224 224 for video names (iresnet3d50)')
    parser.add_argument('--num-proposals', type=int, metavar='N',
                        help='proposals of two-stage detectors; default: the config\'s '
                        'test_cfg.rpn.max_per_img (1000)')
    parser.add_argument('--num-classes', type=int,
                        help='classes of architecture names; default: their dataset\'s (1000, '
                        'CIFAR 10, video 400)')
    parser.add_argument('--convention', choices=sorted(CONVENTIONS) + ['both'], default='both',
                        help='what to count (single-target mode); default (\'both\'): every '
                        'convention')
    parser.add_argument('--table', action='store_true',
                        help='print one markdown table (paper columns); with no targets: every '
                        'configs/ssd300/*.py and the paper\'s ImageNet, CIFAR and video models '
                        '(--tables ' + ' '.join(PAPER_TABLES) + ')')
    parser.add_argument('--tables', nargs='+', choices=TABLES, metavar='NAME',
                        help='print these tables: ' + ', '.join(TABLES) + ' (our FPN detector '
                        'configs beside mmdet\'s ResNet-50/101 ones, params and GMACs)')
    args = parser.parse_args(argv)
    if not args.table and not args.targets and not args.tables:
        parser.error('give at least one config or architecture name, --table or --tables')
    if args.tables and (args.table or args.targets):
        parser.error('--tables prints fixed tables: give no targets and no --table')
    if args.num_proposals is not None and args.num_proposals < 1:
        parser.error('--num-proposals must be at least 1')
    if args.num_classes is not None and args.num_classes < 1:
        parser.error(f'--num-classes {args.num_classes}: a classifier needs at least 1 class')
    if args.shape and len(args.shape) > 3:
        parser.error('--shape takes H, H W, or T H W')
    return args


def input_shape(shape):
    if not shape:
        return None
    if len(shape) == 3:
        return (3, *shape)
    return (3, shape[0], shape[-1])


def print_single(target, shape, conventions, num_classes=None, num_proposals=None):
    row = complexity_rows([target], shape, num_classes, num_proposals)[0]
    print(f'{target}: {row["name"]}, input {row["input_shape"]}')
    print(f'  params: {row["params"] / 1e6:.3f} M ({row["params"]})')
    totals = {'paper': row['paper_flops'], 'paper-cifar': row['paper_cifar_flops'],
              'macs': row['macs']}
    for conv in conventions:
        unit, description = CONVENTIONS[conv]
        print(f'  [{conv}] G{unit}: {totals[conv] / 1e9:.3f}  ({description})')
        if row['uncounted_by_convention'][conv]:
            print(f'    note: no {conv} rule for {row["uncounted_by_convention"][conv]}, '
                  'counted as 0')
    if row['unused_params']:
        print(f'  note: {row["unused_params"]} parameters belong to modules never called')


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, KeyError, ValueError, TypeError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ToolError(str(message)) from None


def paper_table(name, shape):
    """One of the paper's tables as markdown."""
    if name == 'ssd300':
        configs = glob.glob(osp.join(ROOT, 'configs', 'ssd300', '*.py'))
        configs = sorted(map(osp.relpath, configs), key=zoo.ssd300_rank)
        return markdown_table(complexity_rows(configs, shape))
    if name == 'imagenet':
        return markdown_table(complexity_rows(IMAGENET_ARCHS, shape))
    if name == 'cifar':
        return markdown_table(complexity_rows(CIFAR_ARCHS, shape, 10) +
                              complexity_rows(CIFAR_ARCHS, shape, 100))
    return markdown_table(complexity_rows(VIDEO_ARCHS, shape, 400) +
                          complexity_rows(VIDEO_ARCHS, shape, 174))


def paper_legend(tables):
    """The legend of the paper's conventions, naming only the columns that ``tables`` have."""
    return LEGEND['paper'].format(cifar=LEGEND['cifar'] if CIFAR_COLUMN in tables else '')


def print_tables(names, shape, num_proposals=None):
    """The named tables, then the legend of their conventions."""
    tables = []
    for name in names:
        if name == 'fpn':
            tables.append(detector_table(complexity_rows(fpn_configs(), shape,
                                                         num_proposals=num_proposals)))
        else:
            tables.append(paper_table(name, shape))
        print(tables[-1])
        print()
    legends = [paper_legend('\n'.join(tables))] if any(name != 'fpn' for name in names) else []
    print('\n'.join(legends + [LEGEND['fpn']] * ('fpn' in names)))


def run(args):
    shape = input_shape(args.shape)
    if args.tables:
        print_tables(args.tables, shape, args.num_proposals)
        return 0
    if args.table:
        if args.targets:
            table = markdown_table(complexity_rows(args.targets, shape, args.num_classes,
                                                   args.num_proposals))
            print(table)
            print()
            print(paper_legend(table))
        else:
            print_tables(PAPER_TABLES, shape)
        return 0
    conventions = list(CONVENTIONS) if args.convention == 'both' else [args.convention]
    for target in args.targets:
        print_single(target, shape, conventions, args.num_classes, args.num_proposals)
    return 0


if __name__ == '__main__':
    run_main(main)
