"""The settings that make a reproduction run, and the manifest that ties a work root to them.

A work root holds one run: ``reproduce_manifest.json`` records its settings when it starts, and a
later call with other settings is refused (its rows would mix two recipes). The launcher (one node
or Slurm), the rows chosen and the speed figures are not part of a run's settings: a run may
change them between calls.
"""
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from iresnet_mmdet.atomic import output_problem
from iresnet_mmdet.errors import ToolError

from .output import write_json

MANIFEST = 'reproduce_manifest.json'
_FORMAT = 1


@dataclass(frozen=True)
class Settings:
    """What decides a run's results.

    Attributes:
        smoke: the toy-scale run (reduced models, synthetic data, CPU).
        gpus: processes that train each row (GPUs; 1 CPU process for the smoke run).
        device: ``'cuda'`` or ``'cpu'``.
        amp: mixed-precision training (``tools/train.py --amp``).
        data_root: the COCO folder given by ``--data-root`` (absolute), or None for the configs'
            own (``data/coco/``).
        cfg_options: ``key=value`` texts passed to every training and test (``--cfg-options``).
    """
    smoke: bool
    gpus: int
    device: str
    amp: bool
    data_root: Optional[str] = None
    cfg_options: List[str] = field(default_factory=list)

    def record(self) -> dict:
        """The settings as the manifest records them (JSON types)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_record(cls, record: dict) -> 'Settings':
        return cls(**record)


def manifest_path(work_root: str) -> str:
    return osp.join(work_root, MANIFEST)


def read_manifest(work_root: str) -> Optional[Settings]:
    """The settings recorded in a work root, or None where there is no manifest.

    Raises:
        ToolError: For a manifest that cannot be read.
    """
    path = manifest_path(work_root)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return Settings.from_record(json.load(f)['settings'])
    except (ValueError, KeyError, TypeError) as exc:
        raise ToolError(f"'{path}' is not a manifest of tools/reproduce_table.py ({exc}); choose "
                        'another --work-root') from None


def check_work_root(work_root: str, settings: Settings) -> None:
    """Refuse a work root that holds another run, or other files.

    Raises:
        ToolError: If it cannot be written, its manifest records other settings, or it is a
            non-empty folder without a manifest.
    """
    problem = output_problem(work_root, directory=True)
    if problem:
        raise ToolError(f'--work-root: {problem}; choose another')
    recorded = read_manifest(work_root)
    if recorded is None:
        if osp.isdir(work_root) and os.listdir(work_root):
            raise ToolError(f"'{work_root}' is not empty and holds no {MANIFEST}: it is not a "
                            'work root of tools/reproduce_table.py; choose a new or empty '
                            '--work-root')
        return
    theirs, ours = recorded.record(), settings.record()
    if theirs != ours:
        changes = '; '.join(f'{key}: {theirs[key]!r} there, {ours[key]!r} now'
                            for key in ours if theirs.get(key) != ours[key])
        raise ToolError(f"'{work_root}' holds a run with other settings ({changes}): rerun with "
                        'its settings, or choose another --work-root')


def write_manifest(work_root: str, settings: Settings) -> None:
    """Record the settings in a work root (once: an existing manifest is left as it is)."""
    path = manifest_path(work_root)
    if not osp.isfile(path):
        write_json(path, {'tool': 'tools/reproduce_table.py', 'format': _FORMAT,
                          'settings': settings.record()})
