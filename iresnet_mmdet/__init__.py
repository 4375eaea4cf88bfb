"""iresnet-mmdet: the Improved Residual Networks family as MMDetection modules.

Importing this package registers every module of the plugin in MMDetection's registries
(``mmdet.registry.MODELS``, ``METRICS``, ...), so a config can use them through::

    custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)
"""
from . import engine, evaluation, models  # noqa: F401  (registers the modules)
from .version import __version__

__all__ = ['__version__']
