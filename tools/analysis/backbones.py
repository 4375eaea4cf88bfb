"""Print the network catalogue (iresnet_mmdet/models/zoo.py) as a markdown table.

One row per family: its registered type, the engine's three switches as its preset sets them, the
stem max-pool, its depths, the output channels of its stages, the depths with released ImageNet
weights and the rows of the paper's tables it appears in. docs/backbones.md holds the output.

Example::

    .venv/bin/python tools/analysis/backbones.py
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root

from iresnet_mmdet.errors import run_main  # noqa: E402
from iresnet_mmdet.models import zoo  # noqa: E402

LAYOUTS = {'resnet': 'post-activation', 'preact': 'pre-activation',
           'stage': 'stage (start/middle/end)'}
SHORTCUTS = {'conv': 'strided 1x1 conv', 'pool': 'max-pool 3x3, 1x1 conv'}
TABLES = {'IMAGENET_DEPTH': 'ImageNet depth', 'IMAGENET_EXTREME_DEPTH': 'ImageNet extreme depth',
          'IMAGENET_GROUP': 'ImageNet groups', 'STATE_OF_THE_ART': 'state of the art',
          'SSD300_COCO': 'SSD300 COCO', 'CIFAR': 'CIFAR', 'VIDEO': 'video'}
HEADER = ('| type | layout of norms/ReLUs | projection shortcut | block | stem max-pool | depths '
          '| out channels | released ImageNet weights | in the paper\'s tables |\n'
          '|---|---|---|---|---|---|---|---|---|')


def block_text(plan) -> str:
    """The block kinds of a family (every depth), e.g. ``basic / bottleneck``."""
    kinds = sorted({kind for kind, _ in type(plan).arch_settings.values()})
    if kinds == ['group']:
        groups = 'group width 32' if plan.groups == (8, 16, 32, 64) else f'{plan.groups[0]} groups'
        return f'ResGroup ({groups})'
    return ' / '.join(kinds) + (' 3D' if plan.dims == 3 else '')


def paper_rows_text(family) -> str:
    """``table: depths`` of every table of the paper the family appears in."""
    depths = {}
    for table, row in family.paper_rows():
        depths.setdefault(TABLES[table], []).append(str(zoo.split_name(row)[1]))
    return '; '.join(f'{table}: {", ".join(d)}' for table, d in depths.items()) or '-'


def row(family) -> str:
    """The table row of one family."""
    from mmdet.registry import MODELS
    from iresnet_mmdet.models.backbones import ResidualNetwork
    cls = MODELS.get(family.backbone_type)
    ours = issubclass(cls, ResidualNetwork)
    # mmdet's ResNet is the engine's default preset (the same network and keys)
    plan = (cls if ours else ResidualNetwork).plan(depth=max(family.depths))
    name = f'`{family.backbone_type}`' + ('' if ours else " (mmdet's own)")
    cells = [name, LAYOUTS[plan.layout], SHORTCUTS[plan.shortcut], block_text(plan),
             'yes' if plan.stem_pool else 'no', ', '.join(map(str, family.depths)),
             ', '.join(map(str, plan.stage_out_channels())),
             ', '.join(map(str, family.released)) or '-', paper_rows_text(family)]
    return '| ' + ' | '.join(cells) + ' |'


def main(argv=None) -> int:
    import iresnet_mmdet  # noqa: F401  (registers the backbones)
    print(HEADER)
    for family in zoo.FAMILIES:
        print(row(family))
    return 0


if __name__ == '__main__':
    run_main(main)
