from . import backbones, dense_heads  # noqa: F401
