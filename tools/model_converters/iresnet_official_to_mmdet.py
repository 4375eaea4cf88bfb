"""Convert an ImageNet checkpoint of the authors' release (github.com/iduta/iresnet) for mmdet.

Examples::

    .venv/bin/python tools/model_converters/iresnet_official_to_mmdet.py \\
        iresnet50.pth checkpoints/iresnet50.pth --arch iresnet50
    # infer the architecture from the keys and shapes, check only
    .venv/bin/python tools/model_converters/iresnet_official_to_mmdet.py iresnet50.pth --dry-run
    # keep the ImageNet classifier (fc.*), e.g. to check top-1 with the ImageNet form
    .venv/bin/python tools/model_converters/iresnet_official_to_mmdet.py \\
        model_best.pth.tar r50.pth --keep-fc

The output is ``{'meta': {...}, 'state_dict': {...}}`` with the authors' key names (``conv1``,
``bn1``, ``layer1.0.conv1``, ...): point a backbone's
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` at it. Bad input (wrong ``--arch``, missing
keys, a corrupt file, a file that would need arbitrary unpickling) ends with one ``error:`` line and
exit status 2, and nothing is written. The logic lives in :mod:`iresnet_mmdet.convert`.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root

from iresnet_mmdet.errors import run_main  # noqa: E402


def parse_args(argv=None):
    from iresnet_mmdet.convert import RELEASED_ARCHS
    parser = argparse.ArgumentParser(
        description="Convert the authors' ImageNet checkpoints (bare state_dict or training "
        'checkpoint) into backbone weights for init_cfg=dict(type="Pretrained", ...)')
    parser.add_argument('src', help="the authors' checkpoint (.pth / .pth.tar)")
    parser.add_argument('dst', nargs='?', help='output file (not needed with --dry-run)')
    parser.add_argument(
        '--arch', help='architecture, e.g. iresnet50 (default: inferred from keys and shapes). '
        f'Released: {", ".join(RELEASED_ARCHS)}')
    parser.add_argument(
        '--keep-fc', action='store_true',
        help='also keep the ImageNet classifier fc.* (the ImageNet form then loads the file with '
        'strict=True); by default the file holds the backbone only')
    parser.add_argument('--dry-run', action='store_true',
                        help='check and print the summary, write nothing')
    args = parser.parse_args(argv)
    if args.dst is None and not args.dry_run:
        parser.error('give DST, the output file (or --dry-run to check only)')
    return args


def main(argv=None):
    args = parse_args(argv)
    from iresnet_mmdet.convert import convert
    report = convert(args.src, None if args.dry_run else args.dst, args.arch, args.keep_fc)
    print(report.summary())
    return 0


if __name__ == '__main__':
    run_main(main)
