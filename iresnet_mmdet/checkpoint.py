"""Checkpoint files: safe loading with one clear error, the fit check, atomic writing.

* :func:`load_checkpoint` reads a file with ``torch.load(weights_only=True)`` (mmengine's loader
  for URLs): a file that refers to Python callables is refused and nothing in it is executed; a
  missing, empty, truncated or foreign file gives one message that names the real cause.
* :func:`compare_state` and :func:`check_fits`: does a state dict hold every weight of a model, with
  the same shapes? (mmengine loads non-strictly and only warns.)
* :func:`save_checkpoint`: ``torch.save`` through :func:`~iresnet_mmdet.atomic.write_atomic`.
* :func:`allow_mmengine_checkpoint_globals`: what ``weights_only`` must allow for mmengine's own
  checkpoints.

Since torch 2.6 ``torch.load`` unpickles with ``weights_only=True`` by default: only tensors, plain
containers and explicitly allow-listed globals may appear in the file. An mmengine checkpoint
(``epoch_N.pth``) also stores the runner's :class:`~mmengine.logging.MessageHub` state, whose
``HistoryBuffer`` objects hold numpy arrays and references to their statistics methods, so mmengine
0.10.7 fails to load its own checkpoints ("Unsupported global ... HistoryBuffer").

:func:`allow_mmengine_checkpoint_globals` adds exactly what those checkpoints contain to torch's
allow-list (measured on checkpoints written by ``tools/train.py``):

* ``mmengine.logging.history_buffer.HistoryBuffer``;
* numpy arrays and scalars: ``numpy.ndarray``, ``numpy.dtype`` and the classes of the plain
  numeric/bool/str dtypes (``numpy.dtypes.Float64DType``, ...),
  ``numpy._core.multiarray._reconstruct`` and ``numpy._core.multiarray.scalar`` (also under their
  numpy 1.x name ``numpy.core...``);
* ``builtins.getattr``, which pickle uses to refer to ``HistoryBuffer.min`` and its siblings. The
  real ``getattr`` would let a file reach any attribute of any allow-listed object, so a restricted
  stand-in is registered under that name: it only returns the statistics methods of
  ``HistoryBuffer`` and refuses everything else.

Everything else (arbitrary callables, ``os.system`` through ``__reduce__``, ...) is still refused by
torch. Importing :mod:`iresnet_mmdet` (which ``custom_imports`` in every config of this project
does) registers the allow-list.
"""
import os.path as osp
import pickle
import re
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from .atomic import write_atomic
from .errors import ToolError, torch_load_reason, unsafe_checkpoint_message

_REGISTERED = False
# bool, signed/unsigned integers, floats, complex, bytes and str: what logged values can be.
_DTYPE_CODES = '?bhilqBHILQefdgFDGSU'


def _numpy_globals():
    """Numpy reconstruction helpers, under their numpy 2.x and 1.x module names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    entries = [np.ndarray, np.dtype]
    # Unpickling a dtype builds an instance of its class (numpy.dtypes.Float64DType, ...).
    entries += sorted({type(np.dtype(code)) for code in _DTYPE_CODES}, key=str)
    for name in ('_reconstruct', 'scalar'):
        func = getattr(multiarray, name)
        entries.append((func, f'numpy._core.multiarray.{name}'))
        entries.append((func, f'numpy.core.multiarray.{name}'))
    return entries


def history_buffer_getattr(obj, name):
    """Stand-in for ``getattr`` during ``weights_only`` unpickling.

    Args:
        obj: The object the checkpoint asks an attribute of.
        name (str): The attribute name.

    Returns:
        The statistics method ``HistoryBuffer.<name>``.

    Raises:
        pickle.UnpicklingError: For anything but a statistics method of ``HistoryBuffer``.
    """
    import pickle
    allowed = set(HistoryBuffer._statistics_methods) | {'min', 'max', 'current', 'mean'}
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) in a weights_only checkpoint load: only the '
        'statistics methods of mmengine HistoryBuffer are allowed')


def mmengine_checkpoint_globals():
    """The globals an mmengine checkpoint needs, in ``add_safe_globals`` form.

    Returns:
        list: Classes/functions and ``(function, 'module.name')`` pairs.
    """
    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def allow_mmengine_checkpoint_globals():
    """Add the globals of mmengine checkpoints to torch's ``weights_only`` allow-list (once).

    ``weights_only`` stays the default of ``torch.load``; nothing else is allowed.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _REGISTERED = True


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

_SHOWN = 5  # keys named in a message
# What torch itself rebuilds (tensors, storages, OrderedDict): not worth naming in a refusal.
_TORCH_REBUILT = ('torch.', 'collections.OrderedDict')
_UNPICKLER_ERRORS = (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
                     AttributeError, UnicodeDecodeError)


def is_remote(path):
    """Whether ``path`` is a URL (``https://``, ``s3://``, ``open-mmlab://``, ...)."""
    return isinstance(path, str) and '://' in path


def load_checkpoint(path, label='checkpoint'):
    """Read a checkpoint safely: ``torch.load(weights_only=True)``, with one clear error.

    Args:
        path (str): Local file or URL (URLs go through mmengine's ``CheckpointLoader``).
        label (str): What the file is, for the messages (e.g. ``'source checkpoint'``).

    Returns:
        dict: The checkpoint (a state dict or a dict holding one).

    Raises:
        ToolError: For a missing, empty, truncated, corrupt or unsafe file, or one that does not
            hold a dict; nothing in the file is executed.
    """
    path = str(path)
    if not is_remote(path):
        if not osp.isfile(path):
            raise ToolError(f"{label} '{path}' does not exist")
        if osp.getsize(path) == 0:
            raise ToolError(f'cannot read {path}: the file is empty (0 bytes); copy or download '
                            'it again')
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as exc:
        names = unsafe_globals(str(exc), path)
        if names:
            raise ToolError(unsafe_checkpoint_message(', '.join(names[:3]), path)) from None
        raise _unreadable(path, exc) from None
    except _UNPICKLER_ERRORS as exc:
        raise _unreadable(path, exc) from None
    if not isinstance(obj, dict):
        raise ToolError(f'{path} holds a {type(obj).__name__}, not a state_dict (a dict of '
                        'tensors) or a checkpoint with a "state_dict" entry')
    return obj


def _torch_load(path):
    if is_remote(path):
        from mmengine.runner import CheckpointLoader
        return CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='silent')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # e.g. "Detected pickle protocol 4" noise
        return torch.load(path, map_location='cpu', weights_only=True)


def unsafe_globals(text, path=None):
    """The Python objects a refused file refers to: from torch's message, else its opcodes.

    Args:
        text (str): torch's ``UnpicklingError`` text.
        path (str, optional): The file, read (not unpickled) when the text names no object.

    Returns:
        list[str]: ``module.name`` of each object, empty for a file that is simply corrupt.
    """
    found = re.search(r'(?:unsupported GLOBAL|Unsupported global:? GLOBAL) (\S+)',
                      ' '.join(text.split()), re.I)
    if found:
        return [found.group(1).rstrip('.,')]
    # A plain pickle (not written by torch.save) fails earlier, on an opcode that safe loading
    # does not know; name the Python objects it refers to by reading its opcodes (no execution).
    return pickle_globals(path) if path and not is_remote(path) else []


def pickle_globals(path: str, max_ops: int = 100000) -> List[str]:
    """The ``module.name`` globals a plain pickle refers to, read without unpickling.

    Args:
        path: the file.
        max_ops: stop after this many opcodes.

    Returns:
        The names found before the first malformed opcode, except torch's own tensor and storage
        helpers (empty for a non-pickle).
    """
    import pickletools
    names, strings = [], []
    try:
        with open(path, 'rb') as f:
            for i, (op, arg, _) in enumerate(pickletools.genops(f)):
                if i >= max_ops or op.name == 'STOP':
                    break
                if op.name == 'GLOBAL':
                    names.append(str(arg).replace(' ', '.'))
                elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                    names.append('.'.join(strings[-2:]))
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001  (a malformed pickle: keep what was read)
        pass
    return [n for n in dict.fromkeys(names) if not n.startswith(_TORCH_REBUILT)]


def _unreadable(path, exc):
    """The error for a file torch cannot read: its real cause, without torch's advice."""
    detail = ' '.join(str(exc).split())
    detail = re.sub(r'\. This is an internal miniz error.*', '', detail)
    if 'Weights only load failed' in detail:
        detail = torch_load_reason(detail)
    elif not isinstance(exc, RuntimeError):
        detail = f'{type(exc).__name__}: {detail}' if detail else type(exc).__name__
    return ToolError(f'cannot read {path}: the file is truncated, corrupt or not a PyTorch '
                     f'checkpoint ({detail[:200]}); copy or download it again')


# ----------------------------------------------------------------------------------------------
# Fit check
# ----------------------------------------------------------------------------------------------


@dataclass
class Mismatch:
    """How a state dict differs from what a model expects (all lists in the model's order).

    Attributes:
        missing: keys the model has and the state dict lacks.
        unexpected: keys of the state dict the model does not have.
        wrong_shape: (key, shape in the state dict, shape in the model).
    """
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    wrong_shape: List[Tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.wrong_shape)

    def describe(self) -> str:
        """One-line description, e.g. ``'3 shape mismatches (first: ...); 2 keys missing ...'``."""
        parts = []
        if self.wrong_shape:
            first = ', '.join(f'{k} {tuple(a)} in the file vs {tuple(b)}'
                              for k, a, b in self.wrong_shape[:_SHOWN])
            parts.append(f'{len(self.wrong_shape)} shape mismatches (first: {first})')
        if self.missing:
            parts.append(f'{len(self.missing)} keys missing from the file (first: '
                         f'{", ".join(self.missing[:_SHOWN])})')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected keys in the file (first: '
                         f'{", ".join(self.unexpected[:_SHOWN])})')
        return '; '.join(parts)


def compare_state(state: Dict[str, object], expected: Dict[str, Sequence[int]],
                  may_miss: Tuple[str, ...] = ()) -> Mismatch:
    """Compare the keys and shapes of a state dict with the shapes a model expects.

    Args:
        state: key -> tensor (entries without a shape are not compared).
        expected: key -> shape, in the model's order.
        may_miss: key endings that may be absent (e.g. ``'num_batches_tracked'``).

    Returns:
        The :class:`Mismatch` (``count == 0``: the state dict fits).
    """
    result = Mismatch()
    for key, shape in expected.items():
        if key not in state:
            if not key.endswith(tuple(may_miss)):
                result.missing.append(key)
        elif hasattr(state[key], 'shape') and tuple(state[key].shape) != tuple(shape):
            result.wrong_shape.append((key, tuple(state[key].shape), tuple(shape)))
    result.unexpected = [k for k in state if k not in expected]
    return result


def check_fits(model, filename, ckpt=None):
    """Check that a checkpoint holds every weight of ``model`` with the same shapes.

    mmengine loads checkpoints non-strictly and only warns, so a checkpoint of another
    architecture would otherwise give a randomly initialised model and silently wrong metrics.

    Args:
        model (torch.nn.Module): The (possibly wrapped) model the runner built.
        filename (str): The checkpoint.
        ckpt (dict, optional): The checkpoint already loaded from ``filename``.

    Raises:
        ToolError: If a weight is missing or has another shape.
    """
    from mmengine.model import is_model_wrapper
    if ckpt is None:
        ckpt = load_checkpoint(filename)
    state = _without_module_prefix(ckpt.get('state_dict', ckpt))
    module = model.module if is_model_wrapper(model) else model
    # a test-time-augmentation model (DetTTAModel) holds the detector as `module`
    expected = {k: v.shape for k, v in _without_module_prefix(module.state_dict()).items()}
    mismatch = compare_state(state, expected)
    if not mismatch.missing and not mismatch.wrong_shape:
        return
    parts = []
    if mismatch.missing:
        parts.append(f"{len(mismatch.missing)} of the model's {len(expected)} weights are missing "
                     f'(e.g. {mismatch.missing[0]})')
    if mismatch.wrong_shape:
        key, theirs, ours = mismatch.wrong_shape[0]
        parts.append(f'{len(mismatch.wrong_shape)} have another shape (e.g. {key}: checkpoint '
                     f'{list(theirs)}, model {list(ours)})')
    raise ToolError(f"checkpoint '{filename}' does not fit the model of this config: "
                    + '; '.join(parts) + '. Was it trained with another config or backbone?')


def _without_module_prefix(state):
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def save_checkpoint(obj, path):
    """``torch.save`` to ``path`` atomically (a temporary file beside it, then renamed).

    Args:
        obj: What to save.
        path (str): The output file (parent folders are created).

    Raises:
        ToolError: If the file cannot be written; no partial file is left.
    """
    try:
        write_atomic(path, lambda tmp: torch.save(obj, tmp))
    except OSError as exc:  # e.g. a read-only folder, a full disk
        raise ToolError(f'cannot write {path}: {exc.strerror or exc}') from None
