"""Data pipeline: faster SSD augmentation transforms, an image loader that handles bad files, and a
collate function that makes handing batches between processes cheap.

Importing it registers the transforms in mmdet's ``TRANSFORMS`` and the collate function in
mmengine's ``FUNCTIONS`` (docs/training.md, "The training data pipeline").
"""
from .collate import packed_pseudo_collate
from .loading import BadImageError, SafeLoadImageFromFile, jpeg_problem
from .transforms import FastMinIoURandomCrop, FastPhotoMetricDistortion, FastRandomFlip

__all__ = [
    'BadImageError', 'FastMinIoURandomCrop', 'FastPhotoMetricDistortion', 'FastRandomFlip',
    'SafeLoadImageFromFile', 'jpeg_problem', 'packed_pseudo_collate'
]
