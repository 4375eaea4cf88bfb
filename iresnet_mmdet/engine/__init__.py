"""Training/testing support: safe checkpoint loading, CPU multi-process runs, hooks.

Importing this package (``custom_imports = dict(imports=['iresnet_mmdet'])`` does) registers
``CPUDistributedDataParallel``, ``ChannelsLastHook``, ``CompileHook`` and ``FuseConvBNHook``, and
allow-lists the classes stored in mmengine checkpoints for torch's ``weights_only`` loading.
"""
from .checkpoint import allow_mmengine_checkpoint_globals
from .compile import CompileHook, compile_failure, compile_parts
from .dist import CPUDistributedDataParallel, setup_cpu_distributed
from .fuse import FuseConvBNError, FuseConvBNHook, fuse_and_verify
from .hooks import ChannelsLastHook

allow_mmengine_checkpoint_globals()

__all__ = [
    'allow_mmengine_checkpoint_globals', 'CPUDistributedDataParallel', 'setup_cpu_distributed',
    'ChannelsLastHook', 'CompileHook', 'compile_failure', 'compile_parts', 'FuseConvBNError',
    'FuseConvBNHook', 'fuse_and_verify'
]
