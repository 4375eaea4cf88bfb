"""Faster drop-in versions of mmdet's SSD augmentation transforms, with the same distributions.

* :class:`FastMinIoURandomCrop`: mmdet's ``MinIoURandomCrop`` tries up to 50 random rectangles per
  drawn IoU mode, one at a time, each with its own IoU computation through torch; here the 50
  trials of a mode are drawn at once and tested with one array operation, and the first trial that
  passes (in draw order) is the crop. Since the trials are independent, the chosen rectangle has
  exactly the distribution of mmdet's sequential loop.
* :class:`FastRandomFlip`: mmdet's ``RandomFlip`` with the flipped image written out by
  ``cv2.flip`` instead of left as a reversed numpy view: the next transform's float conversion of a
  reversed view is about 15 times slower than of a contiguous array.
* :class:`FastPhotoMetricDistortion`: mmdet's ``PhotoMetricDistortion`` with the same random draws,
  the same OpenCV colour conversions and the same output, with fewer passes in its hue step.

All keep their parent's arguments, draw their randomness from ``numpy.random`` like mmdet's, and
are registered in mmdet's ``TRANSFORMS``; a config names them instead of mmdet's (which stay
usable). ``replaces`` names the mmdet transform each one stands in for
(``benchmarks/data_pipeline.py`` times both).
"""
import cv2
import numpy as np
from mmdet.datasets.transforms import MinIoURandomCrop, PhotoMetricDistortion, RandomFlip
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import autocast_box_type
from numpy import random

# cv2.flip's flip codes for mmcv's flip directions
FLIP_CODES = dict(horizontal=1, vertical=0, diagonal=-1)
# mmdet's MinIoURandomCrop: rectangles tried per drawn mode, and the h/w range of a rectangle
CROP_TRIALS = 50
CROP_ASPECT_RANGE = (0.5, 2.0)
_IOU_EPS = np.float32(1e-6)  # mmdet's bbox_overlaps eps (float32, as its box tensors)


def patch_ious(patches, boxes):
    """IoU of every crop rectangle with every box, as mmdet's ``bbox_overlaps`` computes it.

    The same float32 operations in the same order, so each IoU is bit-identical to mmdet's.

    Args:
        patches (np.ndarray): ``(m, 4)`` float32 rectangles ``x1, y1, x2, y2``.
        boxes (np.ndarray): ``(n, 4)`` float32 boxes.

    Returns:
        np.ndarray: ``(m, n)`` float32 IoUs.
    """
    area1 = (patches[:, 2] - patches[:, 0]) * (patches[:, 3] - patches[:, 1])
    area2 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    lt = np.maximum(patches[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(patches[:, None, 2:], boxes[None, :, 2:])
    wh = np.maximum(rb - lt, np.float32(0))
    overlap = wh[..., 0] * wh[..., 1]
    union = np.maximum(area1[:, None] + area2[None, :] - overlap, _IOU_EPS)
    return overlap / union


def centers_in_patches(boxes, patches):
    """``(m, n)`` bool: the centre of box j lies strictly inside rectangle i (mmdet's rule)."""
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    cx, cy = centers[None, :, 0], centers[None, :, 1]
    return ((cx > patches[:, None, 0]) & (cy > patches[:, None, 1]) &
            (cx < patches[:, None, 2]) & (cy < patches[:, None, 3]))


@TRANSFORMS.register_module()
class FastMinIoURandomCrop(MinIoURandomCrop):
    """mmdet's ``MinIoURandomCrop`` (SSD's random crop) with its trials tested all at once.

    Each round draws a mode from ``(1, *min_ious, 0)``: 1 keeps the image uncropped; otherwise up to
    50 rectangles are drawn (sides in ``[min_crop_size, 1]`` of the image's, h/w in
    ``[0.5, 2]``) and the first one whose IoU with every box is at least the mode and that contains
    at least one box centre is the crop; if none does, a new mode is drawn. The kept boxes are those
    whose centre lies inside the crop, clipped to it. Every draw is the one mmdet makes (including
    its ``numpy.random.uniform(w - new_w)``, i.e. a left edge between 1 and ``w - new_w``), so the
    crops have mmdet's distribution, and a given rectangle gives mmdet's result exactly.

    Args:
        min_ious (Sequence[float]): The IoU modes besides 'no crop' (1) and 'any' (0).
        min_crop_size (float): Smallest crop side, as a fraction of the image's side.
        bbox_clip_border (bool): Clip the kept boxes to the crop.
    """
    replaces = 'MinIoURandomCrop'

    @autocast_box_type()
    def transform(self, results):
        """Crop ``results`` (image, boxes, labels, ignore flags, masks, segmentation map).

        Args:
            results (dict): Result dict of the previous transforms.

        Returns:
            dict: The result dict, cropped unless the 'no crop' mode was drawn.
        """
        assert 'img' in results, '`img` is not found in results'
        assert 'gt_bboxes' in results, '`gt_bboxes` is not found in results'
        height, width = results['img'].shape[:2]
        boxes = results['gt_bboxes'].tensor.numpy()
        while True:
            mode = self._random_mode()
            self.mode = mode
            if mode == 1:
                return results
            patch = self.first_valid_patch(boxes, width, height, mode)
            if patch is not None:
                return self.crop(results, patch)

    def draw_patches(self, width, height):
        """Draw the 50 trial rectangles of one mode, with mmdet's formulas.

        Returns:
            tuple: ``(patches, drawable)``: ``(50, 4)`` int64 rectangles ``x1, y1, x2, y2`` and a
            bool mask of those mmdet would test (h/w within range, not a line or a point).
        """
        draws = random.random_sample((CROP_TRIALS, 4))
        # numpy's uniform(low, high) is low + (high - low) * random_sample()
        low_w, low_h = self.min_crop_size * width, self.min_crop_size * height
        new_w = low_w + (width - low_w) * draws[:, 0]
        new_h = low_h + (height - low_h) * draws[:, 1]
        # mmdet draws uniform(w - new_w): low = w - new_w, high = 1.0
        left = (width - new_w) + (1.0 - (width - new_w)) * draws[:, 2]
        top = (height - new_h) + (1.0 - (height - new_h)) * draws[:, 3]
        patches = np.stack([left, top, left + new_w, top + new_h], axis=1).astype(np.int64)
        aspect = new_h / new_w
        drawable = ((aspect >= CROP_ASPECT_RANGE[0]) & (aspect <= CROP_ASPECT_RANGE[1]) &
                    (patches[:, 2] != patches[:, 0]) & (patches[:, 3] != patches[:, 1]))
        return patches, drawable

    def first_valid_patch(self, boxes, width, height, min_iou):
        """The first of one mode's trial rectangles that mmdet would accept, or None.

        Args:
            boxes (np.ndarray): ``(n, 4)`` float32 boxes of the image (n may be 0).
            width (int): Image width.
            height (int): Image height.
            min_iou (float): The drawn mode.

        Returns:
            np.ndarray or None: The rectangle ``x1, y1, x2, y2`` (int64).
        """
        patches, valid = self.draw_patches(width, height)
        if len(boxes):
            ious = patch_ious(patches.astype(np.float32), boxes)
            # in float64, as mmdet compares its float32 IoU scalar with the float64 mode (also
            # under numpy 1's value-based casting, which would compare an array in float32)
            valid &= ~(ious.min(axis=1).astype(np.float64) < float(min_iou))
            valid &= centers_in_patches(boxes, patches).any(axis=1)
        accepted = np.flatnonzero(valid)
        return patches[accepted[0]] if len(accepted) else None

    def crop(self, results, patch):
        """Apply a chosen rectangle as mmdet does (boxes whose centre is inside, clipped)."""
        boxes = results['gt_bboxes']
        if len(boxes) > 0:
            keep = centers_in_patches(boxes.tensor.numpy(), patch[None])[0]
            boxes = boxes[keep]
            boxes.translate_([-patch[0], -patch[1]])
            if self.bbox_clip_border:
                boxes.clip_([patch[3] - patch[1], patch[2] - patch[0]])
            results['gt_bboxes'] = boxes
            for key in ('gt_ignore_flags', 'gt_bboxes_labels'):
                if results.get(key, None) is not None:
                    results[key] = results[key][keep]
            if results.get('gt_masks', None) is not None:
                results['gt_masks'] = results['gt_masks'][keep.nonzero()[0]].crop(patch)
        img = results['img'][patch[1]:patch[3], patch[0]:patch[2]]
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        if results.get('gt_seg_map', None) is not None:
            results['gt_seg_map'] = results['gt_seg_map'][patch[1]:patch[3], patch[0]:patch[2]]
        return results


@TRANSFORMS.register_module()
class FastPhotoMetricDistortion(PhotoMetricDistortion):
    """mmdet's ``PhotoMetricDistortion`` in fewer passes over the image.

    The same random draws (mmdet's ``_random_flags``), the same order of operations (brightness,
    contrast first or last, saturation and hue in OpenCV's float HSV, channel swap), the same
    float32 arithmetic and OpenCV conversions: for a given draw the output equals mmdet's. The hue
    wrap-around is done in place instead of by boolean-mask indexing.

    Args:
        brightness_delta (int): Largest added brightness.
        contrast_range (Sequence[float]): Range of the contrast factor.
        saturation_range (Sequence[float]): Range of the saturation factor.
        hue_delta (int): Largest hue shift, in degrees.
    """
    replaces = 'PhotoMetricDistortion'

    def transform(self, results):
        """Distort ``results['img']``; the output is float32 like mmdet's.

        Args:
            results (dict): Result dict with ``img``.

        Returns:
            dict: The result dict.
        """
        assert 'img' in results, '`img` is not found in results'
        (mode, brightness_flag, contrast_flag, saturation_flag, hue_flag, swap_flag, delta,
         alpha, saturation, hue, swap) = self._random_flags()
        img = results['img'].astype(np.float32)
        if brightness_flag:
            img += delta
        if mode == 1 and contrast_flag:
            img *= alpha
        img = self.distort_hsv(img, saturation if saturation_flag else None,
                               hue if hue_flag else None)
        if mode == 0 and contrast_flag:
            img *= alpha
        if swap_flag:
            img = img[..., swap]
        results['img'] = img
        return results

    @staticmethod
    def distort_hsv(img, saturation, hue):
        """Scale the saturation and shift the hue in OpenCV's float HSV (mmdet's steps).

        Args:
            img (np.ndarray): float32 BGR image.
            saturation (float or None): Saturation factor, None for none.
            hue (float or None): Hue shift in degrees, None for none.

        Returns:
            np.ndarray: The float32 BGR image after the round trip through HSV.
        """
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        if saturation is not None:
            plane = hsv[..., 1]
            plane *= saturation
            if saturation > 1:  # float HSV saturation is valid in [0, 1]
                np.clip(plane, np.float32(0), np.float32(1), out=plane)
        if hue is not None:
            # in place with ``where`` instead of mmdet's boolean-mask indexing (a gather and a
            # scatter per step)
            # OpenCV's hue is in [0, 360): only one of mmdet's two wrap steps can change it
            plane = hsv[..., 0]
            plane += hue
            if hue > 0:
                np.subtract(plane, 360, out=plane, where=plane > 360)
            else:
                np.add(plane, 360, out=plane, where=plane < 0)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


@TRANSFORMS.register_module()
class FastRandomFlip(RandomFlip):
    """mmdet's ``RandomFlip`` whose flipped image is a contiguous array (``cv2.flip``).

    Same draws, same boxes, masks and segmentation map, same pixel values; only the memory layout
    of the image differs (mmcv's ``imflip`` returns a reversed view).

    Args:
        prob (float or list[float]): Flip probability (per direction if a list).
        direction (str or list[str]): 'horizontal', 'vertical' or 'diagonal'.
    """
    replaces = 'RandomFlip'

    def _flip(self, results):
        img = results['img']
        super()._flip(results)
        if img.ndim <= 3 and (img.ndim == 2 or img.shape[2] <= 4):  # what cv2.flip takes
            results['img'] = cv2.flip(img, FLIP_CODES[results['flip_direction']])
