"""Checkpoint files: safe loading with one clear error, the fit check, atomic writing.

* :func:`load_checkpoint` reads a file with :func:`safe_torch_load` (mmengine's loader
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

On torch < 2.6 (the oldest supported is 2.1) ``torch.load`` unpickles everything by default and
its ``weights_only=True`` takes no such allow-list. There :func:`safe_torch_load` enforces the same
allow-list (torch's own ``weights_only`` globals plus the above) with :class:`AllowListUnpickler`,
and importing the package makes mmengine load local checkpoint files through it (``--resume``,
``load_from``, ``Pretrained`` init). Checkpoint URLs load as mmengine loads them, which on torch <
2.6 means without an allow-list: download such a file and give its local path instead.
"""
import _codecs
import _compat_pickle
import collections
import functools
import os.path as osp
import pickle
import re
import types
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


# ----------------------------------------------------------------------------------------------
# torch < 2.6: the same allow-list through an unpickler of our own
# ----------------------------------------------------------------------------------------------
# torch 2.6 made weights_only the default of torch.load and lets add_safe_globals take
# (object, 'module.name') pairs, which the getattr stand-in and numpy's two module names need.
# Before, weights_only=True has no allow-list (torch 2.1-2.3) or one by object name only (2.4,
# 2.5), and torch.load unpickles everything by default. There AllowListUnpickler enforces the same
# allow-list: torch's own weights_only globals plus mmengine_checkpoint_globals().
TORCH_ALLOWLIST = tuple(int(v) for v in re.findall(r'\d+', torch.__version__)[:2]) >= (2, 6)


# Plain-Python globals that torch >= 2.6 allows and torch 2.1 does not know (e.g. protocol 2
# writes bytes, as in numpy 1.x scalars, through _codecs.encode).
_PYTHON_GLOBALS = {'_codecs.encode': _codecs.encode, 'builtins.bytearray': bytearray,
                   'builtins.complex': complex, 'builtins.set': set,
                   'collections.Counter': collections.Counter}


@functools.lru_cache(maxsize=None)
def _allowed_globals():
    """``module.name`` -> object: torch's weights_only globals plus mmengine's."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals(), **_PYTHON_GLOBALS)
    for entry in mmengine_checkpoint_globals():
        obj, name = entry if isinstance(entry, tuple) else (
            entry, f'{entry.__module__}.{entry.__qualname__}')
        allowed[name] = obj
    return allowed


class AllowListUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that finds only the allow-listed globals (torch < 2.6).

    Every object a checkpoint can build comes from :meth:`find_class`, so a file that refers to
    anything else (``os.system`` through ``__reduce__``, ``eval``, ...) is refused before any of it
    runs, with the message torch gives for the same file.
    """

    def find_class(self, module, name):
        # torch.save writes protocol 2, with Python 2 names (__builtin__.getattr): map them back
        # as pickle's own find_class does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = _allowed_globals().get(f'{module}.{name}')
        if found is None:
            raise pickle.UnpicklingError(
                f'Weights only load failed: Unsupported global: GLOBAL {module}.{name} was not an '
                'allowed global by default')
        return found


# the pickle_module torch.load takes: Unpickler for the zip format, load for the legacy one
_ALLOWLIST_PICKLE = types.SimpleNamespace(
    __name__='iresnet_mmdet.checkpoint.allowlist_pickle', Unpickler=AllowListUnpickler,
    load=lambda f, **kwargs: AllowListUnpickler(f, **kwargs).load())


def allowlist_load(f, map_location=None):
    """``torch.load`` through :class:`AllowListUnpickler` (any torch version).

    Args:
        f (str | file): The checkpoint.
        map_location: As for ``torch.load``.
    """
    return torch.load(f, map_location=map_location, pickle_module=_ALLOWLIST_PICKLE)


def safe_torch_load(f, map_location=None):
    """``torch.load`` with the allow-list: ``weights_only=True`` on torch >= 2.6, else
    :func:`allowlist_load`.

    Args:
        f (str | file): The checkpoint.
        map_location: As for ``torch.load``.
    """
    if TORCH_ALLOWLIST:
        return torch.load(f, map_location=map_location, weights_only=True)
    return allowlist_load(f, map_location)


def _load_local_file(filename, map_location=None):
    """mmengine's loader of local checkpoints, through :func:`safe_torch_load`."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location)


def allow_mmengine_checkpoint_globals():
    """Allow the globals of mmengine checkpoints in safe loading (once).

    torch >= 2.6: adds them to torch's ``weights_only`` allow-list (``weights_only`` stays the
    default of ``torch.load``). Older torch: makes mmengine's loader of local files use
    :func:`safe_torch_load`. Nothing else is allowed either way.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    if TORCH_ALLOWLIST:
        torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    else:
        from mmengine.runner import CheckpointLoader
        CheckpointLoader.register_scheme(prefixes='', loader=_load_local_file, force=True)
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
        return safe_torch_load(path, map_location='cpu')


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
        name = found.group(1).rstrip('.,')
        # AllowListUnpickler stops at the first global it refuses; in a plain pickle that can be
        # torch's own helper (torch.storage._load_from_bytes) ahead of the objects worth naming
        if name.startswith(_TORCH_REBUILT) and path and not is_remote(path):
            return pickle_globals(path) or [name]
        return [name]
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
