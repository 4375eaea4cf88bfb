"""Training/testing support: safe checkpoint loading, CPU multi-process runs, hooks.

Importing this package (``custom_imports = dict(imports=['iresnet_mmdet'])`` does) registers
``CPUDistributedDataParallel`` and ``ChannelsLastHook`` and allow-lists the classes stored in
mmengine checkpoints for torch's ``weights_only`` loading.
"""
from .checkpoint import allow_mmengine_checkpoint_globals
from .dist import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import ChannelsLastHook

allow_mmengine_checkpoint_globals()

__all__ = [
    'allow_mmengine_checkpoint_globals', 'CPUDistributedDataParallel', 'setup_cpu_distributed',
    'ChannelsLastHook'
]
