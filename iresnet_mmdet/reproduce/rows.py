"""The rows of the paper's SSD300 table, their folders in a work root and their state on disk.

A row's work lies in ``<work root>/<config name>/``:

* ``train/``: the training's work dir (checkpoints, ``last_checkpoint``, mmengine's logs);
* ``test/``: the test's work dir, with ``test/metrics.json`` (``tools/test.py --metrics-out``);
* ``metrics.json``: the same figures, copied there once they are checked: the row is finished,
  and nothing of it is written again;
* ``logs/``: the output of each step the driver ran (``train-1.log``, ...), ``attempts.jsonl``
  (command, start, seconds, exit status of each).
"""
import os.path as osp
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from iresnet_mmdet import paper
from iresnet_mmdet.errors import ToolError
from iresnet_mmdet.models import zoo

from .launch import ROOT
from .output import write_text

#: Row states, in the order a row goes through them.
NEW, INTERRUPTED, TRAINED, TESTED, FINISHED = 'new', 'interrupted', 'trained', 'tested', 'finished'
_EPOCH_FILE = re.compile(r'epoch_(\d+)\.pth$')


@dataclass(frozen=True)
class Row:
    """One row of the paper's SSD300 table.

    Attributes:
        name: the paper's name of its backbone, e.g. ``'iResNet-50'``.
        config: our SSD300 config of it (absolute path).
    """
    name: str
    config: str

    @property
    def stem(self) -> str:
        """The config's file name without ``.py``: the name of the row's folder."""
        return osp.splitext(osp.basename(self.config))[0]


def paper_rows() -> List[Row]:
    """Every row of :data:`iresnet_mmdet.paper.SSD300_COCO` with its config, in the paper's order
    (configs from :func:`iresnet_mmdet.models.zoo.ssd300_paper_configs`, in this checkout)."""
    configs = zoo.ssd300_paper_configs()
    return [Row(name, osp.join(ROOT, config)) for name, config in zip(paper.SSD300_COCO, configs)]


def select_rows(names: Optional[Sequence[str]]) -> List[Row]:
    """The rows named (case-insensitive), in the paper's order; all of them for no names.

    Raises:
        ToolError: For a name that is not a row of the paper's table.
    """
    rows = paper_rows()
    if not names:
        return rows
    known = {row.name.lower() for row in rows}
    for name in names:
        if name.lower() not in known:
            raise ToolError(f"row '{name}' is not in the paper's SSD300 table; its rows are: "
                            f"{', '.join(row.name for row in rows)}")
    wanted = {name.lower() for name in names}
    return [row for row in rows if row.name.lower() in wanted]


@dataclass(frozen=True)
class RowDirs:
    """The folders and files of one row in a work root.

    Attributes:
        root: ``<work root>/<config name>``.
    """
    root: str

    @property
    def train(self) -> str:
        return osp.join(self.root, 'train')

    @property
    def test(self) -> str:
        return osp.join(self.root, 'test')

    @property
    def logs(self) -> str:
        return osp.join(self.root, 'logs')

    @property
    def test_metrics(self) -> str:
        """What ``tools/test.py --metrics-out`` writes."""
        return osp.join(self.test, 'metrics.json')

    @property
    def metrics(self) -> str:
        """The finished row's figures (written once, never again)."""
        return osp.join(self.root, 'metrics.json')

    def final_checkpoint(self, max_epochs: int) -> str:
        return osp.join(self.train, f'epoch_{max_epochs}.pth')


@dataclass(frozen=True)
class RowState:
    """Where a row stands.

    Attributes:
        status: :data:`NEW`, :data:`INTERRUPTED` (a checkpoint before the last epoch),
            :data:`TRAINED` (the last epoch's checkpoint), :data:`TESTED` (its metrics written by
            tools/test.py, not yet copied) or :data:`FINISHED`.
        epoch: epochs trained (from the last checkpoint).
        checkpoint: the last checkpoint, or None.
    """
    status: str
    epoch: int = 0
    checkpoint: Optional[str] = None


def checkpoint_epoch(path: Optional[str]) -> int:
    """The epoch of an ``epoch_N.pth`` file (0 for None)."""
    found = _EPOCH_FILE.search(path or '')
    return int(found.group(1)) if found else 0


def last_checkpoint(train_dir: str) -> Optional[str]:
    """The checkpoint that mmengine's ``last_checkpoint`` file names (it is written after the
    checkpoint itself, so the file is complete), looked up in ``train_dir``; None before any.

    Raises:
        ToolError: If it names a file that is not there.
    """
    pointer = osp.join(train_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        name = osp.basename(f.read().strip())
    path = osp.join(train_dir, name)
    if not osp.isfile(path):
        raise ToolError(f"'{pointer}' names {name}, which is not in {train_dir}: remove "
                        f"'{pointer}' to train that row from its first epoch")
    return path


def read_figures(path: str, what: str):
    """The twelve figures of a metrics file, as fractions.

    Args:
        path: ``metrics.json`` of a row.
        what: how the messages name the file's row.

    Raises:
        ToolError: If the file holds no complete set of the twelve figures.
    """
    from iresnet_mmdet.evaluation.detection_table import read_metrics
    try:
        figures = read_metrics(path)
    except ToolError as exc:
        raise ToolError(f'{what}: {exc}'.rstrip('.') + f'; move {path} away to test it again'
                        ) from None
    if figures is None:
        raise ToolError(f"{what}: '{path}' is a detections list, not metrics; move it away to "
                        'test the row again')
    return figures


def row_state(row: Row, dirs: RowDirs, max_epochs: int) -> RowState:
    """The state of a row on disk.

    Args:
        row: The row.
        dirs: Its folders.
        max_epochs: Its schedule's epochs.

    Raises:
        ToolError: For a finished row's metrics file that is not valid, or a broken
            ``last_checkpoint``.
    """
    final = dirs.final_checkpoint(max_epochs)
    if osp.exists(dirs.metrics):
        read_figures(dirs.metrics, f'row {row.name}')
        return RowState(FINISHED, max_epochs, final)
    checkpoint = last_checkpoint(dirs.train)
    epoch = checkpoint_epoch(checkpoint)
    if epoch >= max_epochs and osp.isfile(final):
        try:
            read_figures(dirs.test_metrics, row.name)
        except ToolError:  # not tested yet, or a test that did not finish: test (again)
            return RowState(TRAINED, epoch, final)
        return RowState(TESTED, epoch, final)
    return RowState(INTERRUPTED if checkpoint else NEW, epoch, checkpoint)


def finish_row(row: Row, dirs: RowDirs) -> Optional[str]:
    """Check a tested row's metrics and copy them to its ``metrics.json``: the row is finished.

    Returns:
        str or None: What is wrong with the test's metrics, or None.
    """
    try:
        read_figures(dirs.test_metrics, f'row {row.name}')
    except ToolError as exc:
        return str(exc)
    if not osp.exists(dirs.metrics):  # a finished row is never written again
        with open(dirs.test_metrics) as f:
            write_text(dirs.metrics, f.read())
    return None
