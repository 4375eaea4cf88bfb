"""Training/testing support: CPU multi-process runs, hooks, the tools' pre-flight checks.

Importing this package (``custom_imports = dict(imports=['iresnet_mmdet'])`` does) registers
``CPUDistributedDataParallel``, ``ChannelsLastHook``, ``CompileHook``, ``FuseConvBNHook``,
``ExactResumeHook`` and the ``'atomic_local'`` file backend (:mod:`.resume`).
:mod:`.model_checks` and :mod:`.data_checks` check a config before a tool starts its work.
"""
from .compile import CompileHook, compile_failure, compile_parts
from .dist import CPUDistributedDataParallel, setup_cpu_distributed
from .fuse import FuseConvBNError, FuseConvBNHook, fuse_and_verify
from .hooks import ChannelsLastHook
from .resume import ExactResumeHook, make_resumable

__all__ = [
    'CPUDistributedDataParallel', 'setup_cpu_distributed',
    'ChannelsLastHook', 'CompileHook', 'compile_failure', 'compile_parts', 'FuseConvBNError',
    'FuseConvBNHook', 'fuse_and_verify', 'ExactResumeHook', 'make_resumable'
]
