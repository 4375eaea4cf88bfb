"""iresnet-mmdet: the Improved Residual Networks family as MMDetection modules.

Importing this package registers every module of the plugin in MMDetection's registries
(``mmdet.registry.MODELS``, ``METRICS``, ...), so a config can use them through::

    custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)

and allow-lists the classes stored in mmengine checkpoints for torch's ``weights_only`` loading.
"""
from . import engine, evaluation, models  # noqa: F401  (registers the modules)
from . import datasets  # noqa: F401  (registers the data pipeline transforms)
from .checkpoint import allow_mmengine_checkpoint_globals
from .version import __version__

allow_mmengine_checkpoint_globals()

__all__ = ['__version__']
