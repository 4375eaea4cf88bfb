"""The network catalogue: every family of the paper once, and everything named after it.

A family is one registered backbone type (``'iResGroupFix'``) with the paper's spelling of its
networks (``'iResGroupFix-50'``), the prefix of its architecture names in the authors' model zoo
(``'iresgroupfix50'``), the prefix of its SSD300 config names (``ssd300_iresgroupfix50_...``), the
depths it has released ImageNet weights for, and its setting (ImageNet, CIFAR or video). Its depths
are those of the registered class (``arch_settings``); the paper's rows it appears in are read from
:mod:`iresnet_mmdet.paper`. The classifier, the converter, the complexity tool, the detection table,
the benchmarks and the tests derive their names from :data:`FAMILIES`.
"""
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from iresnet_mmdet import paper

#: Input (C, H, W) or (C, T, H, W) of one image or clip in each setting.
SETTING_INPUT = {'imagenet': (3, 224, 224), 'cifar': (3, 32, 32), 'video': (3, 16, 224, 224)}
#: The paper's tables of each setting, by name (the values of :mod:`iresnet_mmdet.paper`).
_SETTING_TABLES = {
    'imagenet': ('IMAGENET_DEPTH', 'IMAGENET_EXTREME_DEPTH', 'IMAGENET_GROUP', 'STATE_OF_THE_ART',
                 'SSD300_COCO'),
    'cifar': ('CIFAR', ),
    'video': ('VIDEO', ),
}


@dataclass(frozen=True)
class Family:
    """One family of networks.

    Attributes:
        backbone_type: the type registered in ``mmdet.registry.MODELS`` (mmdet's own ``ResNet``
            for the baseline).
        paper_name: the paper's spelling, before ``-<depth>``.
        arch_prefix: the prefix of architecture names (``'iresnet'`` in ``'iresnet50'``).
        config_prefix: the prefix of our SSD300 config names, or None (no SSD300 config).
        released: depths of the authors' released ImageNet weights.
        setting: ``'imagenet'``, ``'cifar'`` or ``'video'``.
    """
    backbone_type: str
    paper_name: str
    arch_prefix: str
    config_prefix: Optional[str] = None
    released: Tuple[int, ...] = ()
    setting: str = 'imagenet'

    @property
    def depths(self) -> Tuple[int, ...]:
        """Every depth the registered class builds."""
        from mmdet.registry import MODELS
        return tuple(sorted(MODELS.get(self.backbone_type).arch_settings))

    def smallest_depths(self) -> Tuple[int, ...]:
        """The smallest depth of each block kind (``basic`` 18, ``bottleneck`` 50, ...)."""
        from mmdet.registry import MODELS
        settings = MODELS.get(self.backbone_type).arch_settings
        kinds = {kind for kind, _ in settings.values()}
        return tuple(sorted(min(d for d in settings if settings[d][0] == kind) for kind in kinds))

    def name(self, depth: int) -> str:
        """The paper's name of the network of ``depth``, e.g. ``'iResNet-50'``."""
        return f'{self.paper_name}-{depth}'

    def arch(self, depth: int) -> str:
        """The architecture name of ``depth`` in the authors' zoo, e.g. ``'iresnet50'``."""
        return f'{self.arch_prefix}{depth}'

    def ssd300_config(self, depth: int) -> str:
        """Our SSD300 config of ``depth`` (relative to the repository root)."""
        return f'configs/ssd300/ssd300_{self.config_prefix}{depth}_8xb32-65e_coco.py'

    def paper_rows(self) -> List[Tuple[str, str]]:
        """``(table, row name)`` of every row of the paper's tables with a network of this family.
        """
        rows = []
        for table in _SETTING_TABLES[self.setting]:
            for row in _row_names(getattr(paper, table)):
                family, _ = split_name(row)
                if family == self.paper_name:
                    rows.append((table, row))
        return rows


#: Every family, the authors' released ones first (in their README's order), then the others.
FAMILIES = (
    Family('ResNet', 'ResNet', 'resnet', 'r', (50, 101, 152, 200)),
    Family('iResNet', 'iResNet', 'iresnet', 'iresnet', (50, 101, 152, 200, 302, 404)),
    Family('ResStage', 'ResStage', 'resstage', 'resstage', (50, 101, 152, 200)),
    Family('ResGroup', 'ResGroup', 'resgroup', 'resgroup', (50, 101, 152)),
    Family('ResGroupFix', 'ResGroupFix', 'resgroupfix', 'resgroupfix', (50, 101, 152)),
    Family('iResGroup', 'iResGroup', 'iresgroup', 'iresgroup', (50, 101, 152)),
    Family('iResGroupFix', 'iResGroupFix', 'iresgroupfix', 'iresgroupfix', (50, 101, 152)),
    Family('PreActResNet', 'PreActResNet', 'preactresnet', 'preactresnet'),
    Family('ResNetCifar', 'ResNet', 'cifar_resnet', setting='cifar'),
    Family('iResNetCifar', 'iResNet', 'cifar_iresnet', setting='cifar'),
    Family('ResNet3D', 'ResNet3D', 'resnet3d', setting='video'),
    Family('iResNet3D', 'iResNet3D', 'iresnet3d', setting='video'),
)
BY_TYPE: Dict[str, Family] = {f.backbone_type: f for f in FAMILIES}
BY_ARCH_PREFIX: Dict[str, Family] = {f.arch_prefix: f for f in FAMILIES}


def _row_names(table) -> List[str]:
    """Row names of a table of :mod:`iresnet_mmdet.paper` (a dict, or a dict of dicts)."""
    names = []
    for key, value in table.items():
        names += _row_names(value) if isinstance(value, dict) else [key]
    return list(dict.fromkeys(names))


def split_name(name: str) -> Tuple[str, Optional[int]]:
    """``'iResNet-50'`` -> ``('iResNet', 50)``; a name without a depth -> ``(name, None)``."""
    found = re.fullmatch(r'(.+)-(\d+)', name)
    return (found.group(1), int(found.group(2))) if found else (name, None)


def family_of_type(backbone_type: str) -> Optional[Family]:
    """The family of a registered type (case-insensitive), or None."""
    lowered = {t.lower(): f for t, f in BY_TYPE.items()}
    return lowered.get(str(backbone_type).lower())


def paper_name(backbone_type: str, depth: Optional[int] = None) -> str:
    """The paper's name of a backbone, e.g. ``('iResNetCifar', 164)`` -> ``'iResNet-164'``.

    Args:
        backbone_type: a registered type; one outside the catalogue keeps its own name.
        depth: the depth, or None.

    Returns:
        ``'<paper spelling>-<depth>'``, or the spelling alone without a depth.
    """
    family = family_of_type(backbone_type.split('.')[-1])
    spelling = family.paper_name if family else backbone_type.split('.')[-1]
    return f'{spelling}-{depth}' if depth else spelling


def parse_arch(arch: str) -> Tuple[Family, int]:
    """Split an architecture name: ``'iresgroupfix50'``, ``'cifar_iresnet3002'``, ``'iresnet3d50'``.

    Args:
        arch: ``<arch prefix><depth>``.

    Returns:
        ``(family, depth)``.

    Raises:
        KeyError: for a name of no family.
    """
    # The prefix is the shortest one that leaves only digits: 'iresnet3d50' -> 'iresnet3d', 50.
    match = re.fullmatch(r'([a-z][a-z0-9_]*?)(\d+)', arch.lower())
    if match is None or match.group(1) not in BY_ARCH_PREFIX:
        raise KeyError(f'unknown architecture {arch!r}; expected <family><depth> with family one '
                       f'of {sorted(BY_ARCH_PREFIX)}, e.g. iresnet50')
    return BY_ARCH_PREFIX[match.group(1)], int(match.group(2))


def arch_of_paper_name(name: str, setting: str = 'imagenet') -> str:
    """The architecture name of a network the paper names, e.g. ``'ResNet-164'`` in ``'cifar'`` ->
    ``'cifar_resnet164'``."""
    spelling, depth = split_name(name)
    for family in FAMILIES:
        if family.paper_name == spelling and family.setting == setting:
            return family.arch(depth)
    raise KeyError(f'no {setting} family is called {spelling!r} in the paper')


def released_archs() -> Tuple[str, ...]:
    """Every architecture with released ImageNet weights (github.com/iduta/iresnet README)."""
    return tuple(f.arch(depth) for f in FAMILIES for depth in f.released)


def ssd300_paper_configs() -> List[str]:
    """The SSD300 configs of the paper's detection table, in its row order."""
    by_name = {f.paper_name: f for f in FAMILIES if f.config_prefix}
    return [by_name[family].ssd300_config(depth)
            for family, depth in map(split_name, paper.SSD300_COCO)]


def ssd300_rank(config: str) -> tuple:
    """Sort key of an SSD300 config: the paper's rows in its order, then our other families in
    the order of :data:`FAMILIES`, unknown configs last (each group by path)."""
    network = (osp.basename(config).split('_') + [''])[1]  # 'iresnet50' of ssd300_iresnet50_...
    rows = [osp.basename(c).split('_')[1] for c in ssd300_paper_configs()]
    if network in rows:
        return (rows.index(network), config)
    others = [f.config_prefix for f in FAMILIES if f.config_prefix and f.paper_name not in
              {split_name(n)[0] for n in paper.SSD300_COCO}]
    prefix = network.rstrip('0123456789')
    rank = others.index(prefix) if prefix in others else len(others)
    return (len(rows) + rank, config)
