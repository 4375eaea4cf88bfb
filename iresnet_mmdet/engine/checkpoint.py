"""Load mmengine checkpoints on torch >= 2.6 without switching ``weights_only`` off.

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
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

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
