"""Convert the authors' ImageNet checkpoints (github.com/iduta/iresnet) into backbone weights.

The authors' files are either bare state_dicts (their ``pretrained=True`` path) or training
checkpoints of their ``main.py`` (``{'epoch', 'arch', 'state_dict', 'best_acc1', 'val_acc1',
'optimizer'}`` with ``module.``-prefixed keys). Our backbones keep the authors' key names, so the
conversion is: read safely, unwrap, strip ``module.``, check every key and shape against the
architecture, and write an mmengine-style checkpoint ``{'meta': {...}, 'state_dict': {...}}``.

By default the written state_dict is the *backbone* (``conv1``, ``bn1``, ``layer1`` ... ``layer4``,
``fc.*`` dropped): the full 4-stage backbone loads it with ``strict=True`` and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads it into a cut backbone (SSD: no
``layer4``; mmengine reports the unused ``layer4`` keys as unexpected and loads the rest).
``keep_fc=True`` also keeps ``fc.*``: the ImageNet form
(:func:`~iresnet_mmdet.models.build_classifier`) then loads the file with ``strict=True``.

Files are read and written by :mod:`iresnet_mmdet.checkpoint`: ``torch.load(weights_only=True)`` (a
file that refers to Python callables, e.g. through ``__reduce__``, is refused and nothing in it is
executed) and an atomic ``torch.save``.
"""
import functools
import hashlib
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .checkpoint import Mismatch, compare_state, load_checkpoint, save_checkpoint
from .errors import ToolError
from .models import zoo
from .models.classifier import build_classifier, parse_arch
from .version import __version__

#: The architectures the authors released ImageNet weights for (github.com/iduta/iresnet README).
RELEASED_ARCHS = zoo.released_archs()
FC_PREFIX = 'fc.'
MODULE_PREFIX = 'module.'
BN_COUNTER = 'num_batches_tracked'
# Where a training checkpoint keeps its weights (the authors' main.py: 'state_dict').
STATE_DICT_ENTRIES = ('state_dict', 'model')
CONVERTER_SCRIPT = 'tools/model_converters/iresnet_official_to_mmdet.py'
_SHOWN = 5  # keys named in a message


class ConversionError(ToolError):
    """A source file that cannot be converted, with a message naming the problem and the fix."""


# ------------------------------------------------------------------------------------------------
# Architectures
# ------------------------------------------------------------------------------------------------


def backbone_config(arch: str) -> dict:
    """The backbone config (``type``, ``depth``) whose keys are those of ``arch``.

    Args:
        arch: an architecture name of the authors' zoo, e.g. ``'iresnet50'``.

    Returns:
        e.g. ``dict(type='iResNet', depth=50)`` (``ResidualNetwork`` for ``'resnet200'``, see
        :func:`~iresnet_mmdet.models.classifier.parse_arch`).
    """
    backbone_type, depth = parse_arch(arch)
    return dict(type=backbone_type, depth=depth)


def candidate_archs() -> List[str]:
    """Every architecture that inference considers: each family at each depth it supports."""
    archs = list(RELEASED_ARCHS)
    for family in zoo.FAMILIES:
        archs += [family.arch(depth) for depth in family.depths]
    return list(dict.fromkeys(archs))


@dataclass(frozen=True)
class Reference:
    """Keys and shapes of one architecture, computed without allocating weights.

    Attributes:
        arch: the architecture name.
        shapes: backbone key -> shape, in the model's order (``fc.*`` excluded).
        param_keys: the keys of learnable parameters (the others are norm buffers).
        feat_dim: the input width of the fc layer.
    """
    arch: str
    shapes: Dict[str, Tuple[int, ...]]
    param_keys: frozenset
    feat_dim: int


@functools.lru_cache(maxsize=None)
def reference(arch: str) -> Reference:
    """The :class:`Reference` of ``arch`` (built once on the meta device, then cached).

    Args:
        arch: an architecture name, e.g. ``'iresnet50'``.

    Returns:
        The reference.

    Raises:
        ConversionError: for an unknown architecture name.
    """
    try:
        with torch.device('meta'):
            model = build_classifier(arch)
    except KeyError as exc:
        raise ConversionError(f'{exc.args[0]}. Released architectures: '
                              f'{", ".join(RELEASED_ARCHS)}') from None
    shapes = OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items()
                         if not k.startswith(FC_PREFIX))
    params = frozenset(k for k, _ in model.named_parameters() if not k.startswith(FC_PREFIX))
    return Reference(arch, shapes, params, model.feat_dim)


# ------------------------------------------------------------------------------------------------
# Reading the source
# ------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """A state_dict read from a file, and what was removed to get it.

    Attributes:
        state_dict: key -> tensor, ``module.`` stripped, ``fc.*`` still included.
        container: ``'bare state_dict'`` or ``"training checkpoint (entry 'state_dict')"``.
        dropped: human-readable notes of what was not kept.
        arch_field: the ``arch`` entry of a training checkpoint (the authors store the family,
            e.g. ``'iresnet'``), or None.
    """
    state_dict: Dict[str, torch.Tensor]
    container: str
    dropped: List[str] = field(default_factory=list)
    arch_field: Optional[str] = None


def read_source(path: str) -> Source:
    """Read a bare state_dict or a training checkpoint and return its weights.

    Args:
        path: the authors' checkpoint.

    Returns:
        The :class:`Source`.

    Raises:
        ConversionError: for anything that is not a state_dict of tensors.
    """
    obj = load_checkpoint(path, 'source checkpoint')
    dropped = []
    container = 'bare state_dict'
    arch_field = None
    entry = next((k for k in STATE_DICT_ENTRIES if isinstance(obj.get(k), dict)), None)
    if entry is not None:
        container = f'training checkpoint (entry {entry!r})'
        others = [str(k) for k in obj if k != entry]
        if others:
            dropped.append(f'checkpoint entries {", ".join(others)}')
        if isinstance(obj.get('arch'), str):
            arch_field = obj['arch']
        obj = obj[entry]
    not_tensors = [str(k) for k, v in obj.items() if not torch.is_tensor(v)]
    if not_tensors or not obj:
        what = (f'entries that are not tensors: {", ".join(not_tensors[:_SHOWN])}'
                if not_tensors else 'no tensors')
        raise ConversionError(
            f"{path} is not a state_dict: it has {what}. Expected the authors' ImageNet "
            'checkpoint (a dict of tensors, or a dict with "state_dict")')
    state_dict, stripped = strip_prefix(obj, MODULE_PREFIX, path)
    if stripped:
        dropped.append(f'prefix "{MODULE_PREFIX}" of {stripped} keys')
    return Source(state_dict, container, dropped, arch_field)


def strip_prefix(state_dict: Dict[str, torch.Tensor], prefix: str,
                 path: str = 'the checkpoint') -> Tuple[Dict[str, torch.Tensor], int]:
    """Remove ``prefix`` (DataParallel's ``module.``) from the keys that have it.

    Args:
        state_dict: key -> tensor.
        prefix: the prefix to remove.
        path: the file, for the error message.

    Returns:
        The new dict and the number of keys changed.

    Raises:
        ConversionError: if two keys become equal.
    """
    out = OrderedDict()
    stripped = 0
    for key, value in state_dict.items():
        key = str(key)
        if key.startswith(prefix):
            key = key[len(prefix):]
            stripped += 1
        if key in out:
            raise ConversionError(f'{path} has the key {key!r} both with and without the '
                                  f'"{prefix}" prefix; it is not a single model\'s state_dict')
        out[key] = value
    return out, stripped


# ------------------------------------------------------------------------------------------------
# Checking against an architecture
# ------------------------------------------------------------------------------------------------


def compare(state_dict: Dict[str, torch.Tensor], arch: str, keep_fc: bool = False) -> Mismatch:
    """Compare every key and shape of ``state_dict`` with ``arch``.

    Args:
        state_dict: the source weights (``module.`` already stripped).
        arch: the architecture.
        keep_fc: the fc layer is required (``fc.weight`` (N, feat_dim) and ``fc.bias`` (N,)).
            Otherwise ``fc.*`` may be absent, but a present ``fc.weight`` must still take
            ``feat_dim`` inputs.

    Returns:
        The :class:`Mismatch` (``count == 0``: the file fits).
    """
    ref = reference(arch)
    result = compare_state(state_dict, ref.shapes, may_miss=(BN_COUNTER, ))
    fc_keys = {FC_PREFIX + 'weight', FC_PREFIX + 'bias'}
    result.unexpected = [k for k in result.unexpected if k not in fc_keys]
    weight, bias = state_dict.get('fc.weight'), state_dict.get('fc.bias')
    if keep_fc:
        result.missing += [k for k in sorted(fc_keys) if k not in state_dict]
    if weight is not None and (weight.dim() != 2 or weight.shape[1] != ref.feat_dim):
        result.wrong_shape.append(('fc.weight', tuple(weight.shape), ('N', ref.feat_dim)))
    elif weight is not None and bias is not None and tuple(bias.shape) != (weight.shape[0], ):
        result.wrong_shape.append(('fc.bias', tuple(bias.shape), (weight.shape[0], )))
    return result


def infer_arch(state_dict: Dict[str, torch.Tensor],
               candidates: Optional[Sequence[str]] = None
               ) -> Tuple[List[str], List[Tuple[str, Mismatch]]]:
    """The architectures whose keys and shapes ``state_dict`` fits exactly.

    Args:
        state_dict: the source weights.
        candidates: architectures to try (default: :func:`candidate_archs`).

    Returns:
        (exact fits, ``(arch, mismatch)`` of the other candidates, closest first).
    """
    candidates = list(candidates or candidate_archs())
    # An exact fit has the file's blocks per stage: try those first (cheap, no model built).
    blocks = _file_stage_blocks(state_dict)
    likely = [a for a in candidates if _stage_blocks(a) == blocks]
    fits, others = [], []
    for group in (likely, [a for a in candidates if a not in likely]):
        for arch in group:
            mismatch = compare(state_dict, arch)
            if mismatch.count:
                others.append((arch, mismatch))
            else:
                fits.append(arch)
        if fits:
            break
    others.sort(key=lambda pair: pair[1].count)
    return fits, others


def _stage_blocks(arch: str) -> Tuple[int, ...]:
    """Blocks per stage of ``arch``, from its class's depth table (no model built)."""
    from mmdet.registry import MODELS
    cfg = backbone_config(arch)
    return tuple(MODELS.get(cfg['type']).arch_settings[cfg['depth']][1])


def _file_stage_blocks(state_dict: Dict[str, torch.Tensor]) -> Tuple[int, ...]:
    """Blocks per stage found in the keys (``layer{s}.{i}.``), e.g. ``(3, 4, 6, 3)``."""
    blocks = {}
    for key in state_dict:
        found = re.match(r'layer(\d+)\.(\d+)\.', key)
        if found:
            stage, index = int(found.group(1)), int(found.group(2))
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
    return tuple(blocks.get(s, 0) for s in range(1, max(blocks, default=0) + 1))


def choose_arch(state_dict: Dict[str, torch.Tensor], arch: Optional[str], keep_fc: bool,
                path: str) -> str:
    """Check ``state_dict`` against ``arch``, or infer the architecture when ``arch`` is None.

    Args:
        state_dict: the source weights.
        arch: the requested architecture, or None.
        keep_fc: the fc layer is required.
        path: the file, for messages.

    Returns:
        The architecture the file fits.

    Raises:
        ConversionError: naming the mismatches and, where one exists, the architecture that fits.
    """
    if arch is not None:
        arch = arch.lower()
        mismatch = compare(state_dict, arch, keep_fc)
        if not mismatch.count:
            return arch
        fits, _ = infer_arch(state_dict)
    else:
        if not any(k.startswith('layer1.') for k in state_dict):
            raise ConversionError(
                f"{path} has none of the keys of the authors' models (conv1.*, bn1.*, layer1.*, "
                f'...); its keys begin: {", ".join(list(state_dict)[:_SHOWN])}')
        fits, others = infer_arch(state_dict)
        if len(fits) > 1:
            raise ConversionError(f'{path} fits several architectures ({", ".join(fits)}); '
                                  'choose one with --arch')
        if not fits:
            closest = ' | '.join(f'{a}: {m.describe()}' for a, m in others[:3])
            raise ConversionError(f'{path} fits no known architecture exactly. Closest: {closest}')
        arch = fits[0]
        mismatch = compare(state_dict, arch, keep_fc)
        if not mismatch.count:
            return arch
    if arch in fits:  # only the fc layer is missing
        raise ConversionError(f'{path} fits {arch} but has no fc layer to keep: '
                              f'{mismatch.describe()}. Convert without --keep-fc')
    hint = (f' The file fits {" / ".join(fits)}: use --arch {fits[0]}'
            if fits else ' No architecture fits it exactly: is the file complete?')
    raise ConversionError(f'{path} does not fit --arch {arch}: {mismatch.describe()}.{hint}')


# ------------------------------------------------------------------------------------------------
# Conversion
# ------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a conversion did (printed by the command line tool).

    Attributes:
        src: the source file.
        dst: the written file, or None for a dry run.
        arch: the architecture.
        container: the source's container format.
        state_dict: the written weights.
        num_params: learnable parameters among them.
        dropped: notes of what was not kept.
        added: keys that were added (zero ``num_batches_tracked`` counters).
        meta: the written ``meta`` entry.
    """
    src: str
    dst: Optional[str]
    arch: str
    container: str
    state_dict: Dict[str, torch.Tensor]
    num_params: int
    dropped: List[str]
    added: List[str]
    meta: dict

    def summary(self) -> str:
        """The human-readable summary: architecture, tensors, parameters, dropped keys, usage."""
        cfg = self.meta['backbone']
        fc = f', fc included ({self.meta["num_classes"]} classes)' if self.meta['fc'] else ''
        arch_field = self.meta.get('source_arch_field')
        arch_field = f", arch field {arch_field!r}" if arch_field else ''
        lines = [
            f'source:        {self.src} ({self.container}{arch_field})',
            f'architecture:  {self.arch}   backbone: dict(type={cfg["type"]!r}, '
            f'depth={cfg["depth"]}){fc}',
            f'tensors:       {len(self.state_dict)}',
            f'parameters:    {self.num_params:,} ({self.num_params / 1e6:.2f} M)',
            f'dropped:       {"; ".join(self.dropped) if self.dropped else "nothing"}',
        ]
        if self.added:
            lines.append(f'added:         {len(self.added)} num_batches_tracked counters (0); the '
                         'file had none')
        if self.dst is None:
            lines.append('written:       nothing (dry run)')
        else:
            lines.append(f'written:       {self.dst}')
            lines.append("use it:        init_cfg=dict(type='Pretrained', "
                         f'checkpoint={self.dst!r})')
        return '\n'.join(lines)


def convert_state_dict(source: Source, arch: str,
                       keep_fc: bool = False) -> Tuple[Dict[str, torch.Tensor], List[str],
                                                       List[str]]:
    """The output state_dict of a checked source, in the model's key order.

    Args:
        source: the source (already checked against ``arch``).
        arch: the architecture.
        keep_fc: keep ``fc.weight`` and ``fc.bias``.

    Returns:
        (state_dict, dropped notes, added keys).
    """
    ref = reference(arch)
    out = OrderedDict()
    added = []
    for key in ref.shapes:
        if key in source.state_dict:
            out[key] = source.state_dict[key]
        else:  # only num_batches_tracked can be missing now
            out[key] = torch.tensor(0, dtype=torch.long)
            added.append(key)
    fc_keys = [k for k in source.state_dict if k.startswith(FC_PREFIX)]
    dropped = list(source.dropped)
    if keep_fc:
        out.update((k, source.state_dict[k]) for k in fc_keys)
    elif fc_keys:
        dropped.append(f'{", ".join(fc_keys)} (the ImageNet classifier; --keep-fc keeps it)')
    return out, dropped, added


def convert(src: str, dst: Optional[str] = None, arch: Optional[str] = None,
            keep_fc: bool = False) -> Report:
    """Convert one of the authors' checkpoints; write it to ``dst`` unless ``dst`` is None.

    Nothing is written unless every check passes; ``dst`` is written to a temporary file that is
    renamed at the end, so an existing ``dst`` is never left half-written.

    Args:
        src: the authors' checkpoint (bare state_dict or training checkpoint).
        dst: the output file, or None to check only.
        arch: the architecture (e.g. ``'iresnet50'``), or None to infer it from keys and shapes.
        keep_fc: also keep the ImageNet classifier (``fc.*``), so that the ImageNet form loads the
            file with ``strict=True``. Without it the file is backbone-only.

    Returns:
        The :class:`Report`.

    Raises:
        ToolError: for a file that cannot be read or written (ConversionError: one that does not fit
            the architecture).
    """
    src, dst = str(src), None if dst is None else str(dst)
    if dst is not None and osp.isdir(dst):
        raise ConversionError(f'the output {dst} is a folder; give a file name, e.g. '
                              f'{osp.join(dst, "iresnet50.pth")}')
    if dst is not None and osp.exists(src) and osp.exists(dst) and osp.samefile(src, dst):
        raise ConversionError(f'the output {dst} is the source file; choose another path')
    source = read_source(src)
    arch = choose_arch(source.state_dict, arch, keep_fc, src)
    state_dict, dropped, added = convert_state_dict(source, arch, keep_fc)
    ref = reference(arch)
    num_params = sum(v.numel() for k, v in state_dict.items()
                     if k in ref.param_keys or k.startswith(FC_PREFIX))
    meta = dict(
        arch=arch,
        backbone=backbone_config(arch),
        fc=keep_fc,
        source=osp.basename(src),
        source_sha256=_sha256(src),
        converter=f'iresnet_mmdet {__version__} ({CONVERTER_SCRIPT})')
    if keep_fc:
        meta['num_classes'] = int(state_dict['fc.weight'].shape[0])
    if source.arch_field is not None:
        meta['source_arch_field'] = source.arch_field
    if dst is not None:
        save_checkpoint({'meta': meta, 'state_dict': state_dict}, dst)
    return Report(src, dst, arch, source.container, state_dict, num_params, dropped, added, meta)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 22), b''):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    'RELEASED_ARCHS', 'ConversionError', 'Report', 'Source', 'backbone_config',
    'candidate_archs', 'choose_arch', 'compare', 'convert',
    'convert_state_dict', 'infer_arch', 'read_source', 'reference'
]
