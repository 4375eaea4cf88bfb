"""Pre-flight check of the checkpoint a backbone starts from (``init_cfg=dict(type='Pretrained')``).

mmengine loads it only when training starts (after the data loaders and the model are built, in
every process), and non-strictly: a missing file stops the run there, and a file of another
backbone only warns and trains from random weights. :func:`check_pretrained` reads the file before
any of that: it must exist, load safely and hold every weight of the backbone with its shape.
"""
import os.path as osp
import re

from ..checkpoint import compare_state, is_remote, load_checkpoint
from ..errors import ToolError

_CONVERTER = ("convert the authors' ImageNet file for this backbone with "
              'tools/model_converters/iresnet_official_to_mmdet.py (docs/converter.md)')
_FROM_SCRATCH = 'or train from scratch with --cfg-options model.backbone.init_cfg=None'


def _pretrained_init(backbone):
    """The ``Pretrained`` entry of a backbone's ``init_cfg`` (a dict or a list of them), or None."""
    init = backbone.get('init_cfg')
    for entry in init if isinstance(init, (list, tuple)) else [init]:
        if isinstance(entry, dict) and entry.get('type') == 'Pretrained':
            return entry
    return None


def check_pretrained(cfg):
    """Check the local checkpoint of ``model.backbone.init_cfg`` against the backbone.

    URLs and ``torchvision://`` / ``open-mmlab://`` names are left to mmengine (it downloads them).

    Args:
        cfg (mmengine.Config): The training config.

    Raises:
        ToolError: If the file is missing, unreadable or unsafe, or lacks a weight of the backbone
            or has one of another shape; the message points to docs/converter.md.
    """
    model = cfg.get('model')
    backbone = model.get('backbone') if isinstance(model, dict) else None
    init = _pretrained_init(backbone) if isinstance(backbone, dict) else None
    path = init.get('checkpoint') if init else None
    if not isinstance(path, str) or is_remote(path):
        return
    label = 'model.backbone.init_cfg.checkpoint'
    if not osp.isfile(path):
        raise ToolError(f"{label} '{path}' does not exist: the backbone's ImageNet weights; "
                        f'{_CONVERTER}, {_FROM_SCRATCH}')
    checkpoint = load_checkpoint(path, label=label)
    state = _backbone_state(checkpoint, init.get('prefix'))
    built = _build_backbone(backbone)
    expected = {k: v.shape for k, v in built.state_dict().items()}
    mismatch = compare_state(state, expected, may_miss=('num_batches_tracked', ))
    mismatch.unexpected = []  # extra weights (e.g. the classifier's fc) are ignored by mmengine
    if mismatch.count:
        name = backbone.get('type')
        depth = backbone.get('depth')
        raise ToolError(f"{label} '{path}' does not fit the backbone ({name}"
                        f"{f'-{depth}' if depth else ''}): {mismatch.describe()}; {_CONVERTER}")


def _backbone_state(checkpoint, prefix):
    """The state dict mmengine's ``PretrainedInit`` would load (``module.`` and ``prefix``
    stripped)."""
    state = checkpoint.get('state_dict', checkpoint)
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _build_backbone(backbone):
    from mmdet.registry import MODELS
    args = dict(backbone, init_cfg=None)
    try:
        return MODELS.build(args)
    except Exception as exc:  # noqa: BLE001  (a bad argument: the model checks name it first)
        raise ToolError(f"model.backbone ({backbone.get('type')}) cannot be built: {exc}") from None
