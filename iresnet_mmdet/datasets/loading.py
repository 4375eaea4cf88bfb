"""Image loading that names a bad image file: skip it with a warning, or stop with one clear error.

mmcv's ``LoadImageFromFile`` stops on an undecodable file with an assertion, inside a DataLoader
worker. :class:`SafeLoadImageFromFile` decodes exactly as mmcv's does, but first checks that a
JPEG file is complete (libjpeg reports a premature end only as a warning; OpenCV 4.11 and 5.1
then return no image, other decoders or versions may return one with its missing part grey), and
on a file that cannot be read, is truncated or cannot be decoded either

* skips it (``skip_bad_images=True``): logs a warning naming the file and the running count of
  skipped images of the process, and returns None, so that mmengine's ``BaseDataset`` (in
  training) loads another random image instead (at most ``max_refetch`` times in a row, 1000 by
  default, then it raises); or
* raises :class:`BadImageError` naming the file (``skip_bad_images=False``: for test pipelines,
  where mmengine's dataset cannot skip an image, and for training runs that must see every image).

Whichever it is, a DataLoader worker does not die silently: PyTorch re-raises a worker's exception
in the main process, and :class:`BadImageError` keeps its one-line message there.
"""
import logging

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine import fileio
from mmengine.logging import print_log

from ..errors import ToolError

_JPEG_START = b'\xff\xd8'
_JPEG_SCAN = b'\xff\xda'  # start of a scan (entropy-coded data follows)
_JPEG_END = b'\xff\xd9'


class BadImageError(ToolError):
    """An image file of the dataset cannot be read or decoded; the message names the file.

    PyTorch re-raises a DataLoader worker's exception in the main process as
    ``BadImageError(<the worker's traceback>)``; the message is then cut back to the original one,
    so that the tools still print one ``error:`` line.
    """

    def __init__(self, message=''):
        text = str(message)
        if 'Original Traceback' in text:
            last = text.rstrip().splitlines()[-1]
            text = last.split(f'{type(self).__name__}: ', 1)[-1]
        super().__init__(text)


def jpeg_problem(data):
    """Why ``data`` is an incomplete JPEG file, or None (complete, or not a JPEG).

    A JPEG ends with an end-of-image marker after its last scan, and marker bytes cannot occur
    inside the entropy-coded data, so a file cut anywhere after its header lacks that marker. Most
    files end with it (zero padding allowed): checked in constant time. Otherwise (data appended
    after the image, or a truncated file) the file is searched for the marker after its last scan.

    Args:
        data (bytes): The file's content.

    Returns:
        str or None: The problem, phrased to follow "the image".
    """
    if not data.startswith(_JPEG_START):
        return None
    if data.rstrip(b'\0').endswith(_JPEG_END):
        return None
    last_scan = data.rfind(_JPEG_SCAN)
    if last_scan < 0:
        return 'is a truncated JPEG file (it ends before its image data)'
    if data.find(_JPEG_END, last_scan) < 0:
        return 'is a truncated JPEG file (no end-of-image marker after its image data)'
    return None


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that skips or names an unreadable, truncated or corrupt image.

    The decoding is mmcv's (``mmcv.imfrombytes`` with the same flag and backend), so a good image
    gives exactly the same array.

    Args:
        skip_bad_images (bool): True: warn (naming the file) and return None, so that the training
            dataset loads another image; False: raise :class:`BadImageError` naming the file.
        **kwargs: The arguments of mmcv's ``LoadImageFromFile`` (``to_float32``, ``color_type``,
            ``imdecode_backend``, ``backend_args``, ...).
    """
    replaces = 'LoadImageFromFile'
    skipped = 0  # images skipped by this process (each DataLoader worker counts its own)

    def __init__(self, skip_bad_images=True, **kwargs):
        super().__init__(**kwargs)
        self.skip_bad_images = skip_bad_images

    def transform(self, results):
        """Load ``results['img_path']``.

        Args:
            results (dict): Result dict with ``img_path``.

        Returns:
            dict or None: The result dict with ``img``, ``img_shape`` and ``ori_shape``, or None
            for a skipped image.
        """
        filename = results['img_path']
        img, problem = self.load(filename)
        if problem is not None:
            return self.bad_image(filename, problem)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def load(self, filename):
        """``(image, None)``, or ``(None, problem)`` for a bad file."""
        try:
            if self.file_client_args is not None:
                client = fileio.FileClient.infer_client(self.file_client_args, filename)
                data = client.get(filename)
            else:
                data = fileio.get(filename, backend_args=self.backend_args)
        except OSError as exc:
            return None, f'cannot be read ({exc.strerror or exc})'
        if not data:
            return None, 'is empty'
        problem = jpeg_problem(data)
        if problem is not None:
            return None, problem
        try:
            img = mmcv.imfrombytes(data, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as exc:  # noqa: BLE001  (each backend raises its own errors)
            return None, f'cannot be decoded ({type(exc).__name__}: {exc})'
        if img is None:
            return None, f'cannot be decoded by {self.imdecode_backend} (corrupt or not an image)'
        return img, None

    def bad_image(self, filename, problem):
        """Skip (warn, count, return None) or raise, as ``skip_bad_images`` says."""
        if not self.skip_bad_images:
            raise BadImageError(
                f"image '{filename}' {problem}: replace or remove it, or let training skip bad "
                'images (skip_bad_images=True of SafeLoadImageFromFile in the train pipeline)')
        SafeLoadImageFromFile.skipped += 1
        print_log(f"skipped image '{filename}': it {problem} ({SafeLoadImageFromFile.skipped} "
                  'skipped by this process so far)', logger='current', level=logging.WARNING)
        return None

    def __repr__(self):
        return super().__repr__()[:-1] + f', skip_bad_images={self.skip_bad_images})'
