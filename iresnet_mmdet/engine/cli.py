"""Kept only for ``benchmarks/detector_speed.py`` and ``benchmarks/gpu_check.py`` until they import
:mod:`iresnet_mmdet.errors` themselves; everything else uses that module."""
from ..errors import ToolError, run_main

__all__ = ['ToolError', 'run_main']
