from . import backbones, dense_heads  # noqa: F401
from .classifier import build_classifier

__all__ = ['build_classifier']
