"""Data pipeline: faster SSD augmentation transforms and an image loader that handles bad files.

Importing it registers the transforms in mmdet's ``TRANSFORMS`` (docs/training.md, "The training
data pipeline").
"""
from .loading import BadImageError, SafeLoadImageFromFile, jpeg_problem
from .transforms import FastMinIoURandomCrop, FastPhotoMetricDistortion, FastRandomFlip

__all__ = [
    'BadImageError', 'FastMinIoURandomCrop', 'FastPhotoMetricDistortion', 'FastRandomFlip',
    'SafeLoadImageFromFile', 'jpeg_problem'
]
