"""The faster SSD transforms (iresnet_mmdet.datasets) against mmdet's, and bad-image handling.

References are mmdet's own transforms: exactly, where the draws are the same (a crop given the
trials drawn, photometric distortion given its flags, a flip given its direction, decoding), and
statistically on a few thousand real draws (two-sample KS and chi-square tests) for the whole
SSD augmentation: crop, resize, flip, colour.
"""
import itertools
import json
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from scipy import stats
from tool_runs import assert_one_line_error, tool_env

import iresnet_mmdet.datasets.transforms as fast
import mmdet.datasets.transforms.transforms as mmdet_transforms
from iresnet_mmdet.datasets import (BadImageError, FastMinIoURandomCrop,
                                    FastPhotoMetricDistortion, FastRandomFlip,
                                    SafeLoadImageFromFile, jpeg_problem)
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import (MinIoURandomCrop, PhotoMetricDistortion, RandomFlip,
                                       Resize)
from mmdet.structures.bbox import HorizontalBoxes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PHOTO_ARGS = dict(brightness_delta=16, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                  hue_delta=9)  # the SSD300 COCO config's
P_MIN = 1e-3  # smallest p-value accepted by the two-sample tests (fixed seeds: deterministic)


def detection_results(img, boxes):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)  # a copy: boxes change in place
    n = len(boxes)
    return dict(img=img, img_shape=img.shape[:2],
                gt_bboxes=HorizontalBoxes(torch.from_numpy(boxes)), gt_bboxes_labels=np.arange(n),
                gt_ignore_flags=np.arange(n) % 3 == 2)


def assert_same_results(a, b):
    assert a['img'].shape == b['img'].shape and np.array_equal(a['img'], b['img'])
    assert a['img_shape'] == b['img_shape']
    assert torch.equal(a['gt_bboxes'].tensor, b['gt_bboxes'].tensor)
    assert np.array_equal(a['gt_bboxes_labels'], b['gt_bboxes_labels'])
    assert np.array_equal(a['gt_ignore_flags'], b['gt_ignore_flags'])


# ----------------------------------------------------------------------------------------------
# Crop: exact for the same draws
# ----------------------------------------------------------------------------------------------


class ScriptedDraws:
    """Stands in for ``numpy.random`` in both modules: scripted modes, and per mode a table of 50
    trials x 4 uniform draws (new w, new h, left, top), served whole to the fast crop
    (``random_sample``) and value by value, as mmdet's loop asks for them, to mmdet's
    (``uniform``: no left/top draws after a rejected h/w)."""

    def __init__(self, modes, tables):
        self.modes, self.tables = list(modes), [t.copy() for t in tables]
        self.table, self.row, self.column = None, 0, 0

    def choice(self, options):
        return self.modes.pop(0)

    def random_sample(self, size):
        assert size == self.tables[0].shape
        return self.tables.pop(0)

    def uniform(self, low, high=1.0):
        if self.table is None:
            self.table, self.row, self.column = self.tables.pop(0), 0, 0
        value = low + (high - low) * self.table[self.row, self.column]
        self.column += 1
        if self.column == 1:
            self.new_w = value
        elif self.column == 2:
            self.new_h = value
        if self.column == 4 or (self.column == 2 and not 0.5 <= self.new_h / self.new_w <= 2):
            self.row, self.column = self.row + 1, 0
            if self.row == len(self.table):
                self.table = None
        return value


def random_case(rng):
    height, width = (int(v) for v in rng.integers(16, 80, size=2))
    n = int(rng.integers(0, 5))  # images without boxes too
    xy = rng.uniform(-8, [width, height], size=(n, 2))
    wh = rng.uniform(0, [width, height], size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    img = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    modes = list(rng.choice([0, 0.1, 0.3, 0.5, 0.7, 0.9, 1], size=12)) + [1]
    tables = [rng.random((50, 4)) for _ in modes]
    return img, boxes, modes, tables


def test_crop_equals_mmdet_for_the_same_draws(monkeypatch):
    # The chosen trial (the first accepted one, in draw order), the box filter (centre inside),
    # clipping, labels and ignore flags, for images with 0-4 boxes, some partly outside.
    rng = np.random.default_rng(0)
    for _ in range(150):
        img, boxes, modes, tables = random_case(rng)
        outputs = []
        for transform in (MinIoURandomCrop(), FastMinIoURandomCrop()):
            draws = ScriptedDraws(modes, tables)
            monkeypatch.setattr(mmdet_transforms, 'random', draws)
            monkeypatch.setattr(fast, 'random', draws)
            outputs.append(transform(detection_results(img.copy(), boxes)))
        assert_same_results(*outputs)


def test_crop_patch_ious_bit_identical_to_mmdet():
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 60, size=(50, 4)).astype(np.float32)
    patches[:, 2:] += patches[:, :2] + 1
    boxes = rng.uniform(-5, 70, size=(7, 4)).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2]
    expected = HorizontalBoxes(patches).overlaps(HorizontalBoxes(patches),
                                                 HorizontalBoxes(boxes)).numpy()
    assert np.array_equal(fast.patch_ious(patches, boxes), expected)


def test_crop_without_box_centres_in_any_crop_ends_uncropped():
    # every box centre lies outside the image: no crop can keep a box, so only the 'no crop'
    # mode ends the loop (as in mmdet); it must end, with the image and boxes as they were
    img = np.zeros((48, 64, 3), np.uint8)
    boxes = [[-40, -30, 2, 2], [60, 40, 100, 90]]
    np.random.seed(0)
    for transform in (MinIoURandomCrop(), FastMinIoURandomCrop()):
        for _ in range(20):
            out = transform(detection_results(img, boxes))
            assert out['img'].shape == img.shape
            assert out['gt_bboxes'].tensor.tolist() == boxes


# ----------------------------------------------------------------------------------------------
# Photometric distortion and flip: exact for the same draws
# ----------------------------------------------------------------------------------------------


def test_photometric_equals_mmdet_for_every_flag_combination():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    inputs = (img, np.flip(img, 1), img.astype(np.float32) * 1.5 - 40)  # view, float input
    for flags in itertools.product((0, 1), repeat=6):
        for sign in (-1, 1):
            draw = flags + (sign * rng.uniform(0, 16), rng.uniform(0.5, 1.5),
                            rng.uniform(0.5, 1.5), sign * rng.uniform(0, 9), rng.permutation(3))
            for source in inputs:
                outputs = []
                for cls in (PhotoMetricDistortion, FastPhotoMetricDistortion):
                    transform = cls(**PHOTO_ARGS)
                    transform._random_flags = lambda: draw
                    outputs.append(transform(dict(img=source.copy()))['img'])
                assert outputs[1].dtype == np.float32
                assert np.array_equal(outputs[0], outputs[1]), (flags, draw)


def test_flip_equals_mmdet_and_is_contiguous():
    img = np.random.default_rng(3).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    directions = ['horizontal', 'vertical', 'diagonal']
    for seed in range(12):
        outputs = []
        for cls in (RandomFlip, FastRandomFlip):
            np.random.seed(seed)
            results = detection_results(img.copy(), [[2, 3, 20, 25], [10, 0, 40, 30]])
            outputs.append(cls(prob=[0.3, 0.3, 0.3], direction=directions)(results))
        assert_same_results(*outputs)
        assert outputs[0]['flip_direction'] == outputs[1]['flip_direction']
        assert outputs[1]['img'].flags.c_contiguous


# ----------------------------------------------------------------------------------------------
# The whole SSD augmentation: the same distributions
# ----------------------------------------------------------------------------------------------


def coordinate_image(width=64, height=48):
    """B = x, G = y, R = a fixed pattern: a crop's position can be read from its first pixel."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x, y, (x * 7 + y * 13) % 256], axis=-1).astype(np.uint8)


# two overlapping boxes: crops keep one or both, and mmdet's loop stays quick (1.7 ms a draw)
BOXES = np.array([[6, 4, 40, 30], [20, 16, 60, 44]], np.float32)


def augmentation_samples(crop_cls, flip_cls, photo_cls, draws, seed):
    """Per draw: crop x, y, w, h, kept boxes, flip, per-channel colour shift, box areas."""
    crop, resize = crop_cls(min_crop_size=0.3), Resize(scale=(32, 32), keep_ratio=False)
    flip, photo = flip_cls(prob=0.5), photo_cls(**PHOTO_ARGS)
    img = coordinate_image()
    np.random.seed(seed)
    rows, areas = [], []
    for _ in range(draws):
        results = crop(detection_results(img, BOXES))
        x, y = (int(v) for v in results['img'][0, 0, :2])
        h, w = results['img'].shape[:2]
        kept = len(results['gt_bboxes'])
        results = flip(resize(results))
        before = results['img'].reshape(-1, 3).astype(np.float32).mean(0)
        after = photo(results)['img'].reshape(-1, 3).mean(0)
        rows.append([x, y, w, h, kept, results['flip'], *(after - before)])
        areas.extend(results['gt_bboxes'].areas.tolist())
    return np.array(rows, dtype=np.float64), np.array(areas)


@pytest.fixture(scope='module')
def samples():
    draws = 2500
    mmdet = augmentation_samples(MinIoURandomCrop, RandomFlip, PhotoMetricDistortion, draws, 0)
    ours = augmentation_samples(FastMinIoURandomCrop, FastRandomFlip, FastPhotoMetricDistortion,
                                draws, 1)
    return mmdet, ours


def crop_ious(rows):
    x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    patches = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
    return HorizontalBoxes(patches).overlaps(HorizontalBoxes(patches),
                                             HorizontalBoxes(BOXES)).numpy()


def test_same_crop_distribution(samples):
    (mmdet, _), (ours, _) = samples
    for name, statistic in (
            ('left', lambda r: r[:, 0]), ('top', lambda r: r[:, 1]),
            ('area', lambda r: r[:, 2] * r[:, 3] / (64 * 48)),
            ('aspect', lambda r: r[:, 3] / r[:, 2]),
            ('min IoU with the boxes', lambda r: crop_ious(r).min(1)),
            ('max IoU with the boxes', lambda r: crop_ious(r).max(1))):
        p = stats.ks_2samp(statistic(mmdet), statistic(ours)).pvalue
        assert p > P_MIN, f'{name}: KS p = {p:.2g}'
    uncropped = [np.mean((r[:, 2] == 64) & (r[:, 3] == 48)) for r in (mmdet, ours)]
    assert abs(uncropped[0] - uncropped[1]) < 0.03, uncropped  # 'no crop' is 1 of 7 modes


def chi_square_p(a, b):
    values = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    return stats.chi2_contingency(table)[1]


def test_same_kept_boxes_flips_and_colours(samples):
    (mmdet, mmdet_areas), (ours, our_areas) = samples
    assert chi_square_p(mmdet[:, 4], ours[:, 4]) > P_MIN, 'kept-box counts'
    assert chi_square_p(mmdet[:, 5], ours[:, 5]) > P_MIN, 'flips'
    assert stats.ks_2samp(mmdet_areas, our_areas).pvalue > P_MIN, 'box areas after resize'
    for channel in range(3):
        p = stats.ks_2samp(mmdet[:, 6 + channel], ours[:, 6 + channel]).pvalue
        assert p > P_MIN, f'colour shift of channel {channel}: KS p = {p:.2g}'


# ----------------------------------------------------------------------------------------------
# Loading: exact decoding, bad images
# ----------------------------------------------------------------------------------------------


def write_jpeg(path, seed, size=(48, 64)):
    img = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.GaussianBlur(img, (5, 5), 0))


def test_decoding_equals_mmcv(tmp_path):
    write_jpeg(tmp_path / 'a.jpg', 0)
    results = [cls()(dict(img_path=str(tmp_path / 'a.jpg')))
               for cls in (LoadImageFromFile, SafeLoadImageFromFile)]
    assert np.array_equal(results[0]['img'], results[1]['img'])
    assert results[0]['ori_shape'] == results[1]['ori_shape'] == (48, 64)


def test_jpeg_problem(tmp_path):
    write_jpeg(tmp_path / 'a.jpg', 0)
    data = (tmp_path / 'a.jpg').read_bytes()
    assert jpeg_problem(data) is None
    assert jpeg_problem(data + b'\0\0') is None  # padding after the end marker is fine
    assert jpeg_problem(data + b'appended data') is None  # e.g. a camera's trailer
    assert jpeg_problem(b'\x89PNG\r\n') is None  # not a JPEG: left to the decoder
    for cut in (len(data) // 2, len(data) - 2, 40):
        assert 'truncated' in jpeg_problem(data[:cut])


def tiny_coco(folder, bad=None):
    """4 images of 64x48 with one box each (image 2: none); ``bad``: 'truncated' or 'garbage'."""
    images, annotations = [], []
    for i in range(4):
        write_jpeg(folder / f'{i}.jpg', i)
        images.append(dict(id=i + 1, file_name=f'{i}.jpg', width=64, height=48))
        if i != 2:
            annotations.append(dict(id=i + 1, image_id=i + 1, category_id=1,
                                    bbox=[8, 6, 30, 20], area=600, iscrowd=0))
    path = folder / '1.jpg'
    if bad == 'truncated':
        path.write_bytes(path.read_bytes()[:300])
    elif bad == 'garbage':
        path.write_bytes(b'\xff\xd8' + b'not an image' * 20 + b'\xff\xda\xff\xd9')
    ann_file = folder / 'ann.json'
    ann_file.write_text(json.dumps(dict(images=images, annotations=annotations,
                                        categories=[dict(id=1, name='thing')])))
    return str(ann_file), str(path)


def ssd_loader(folder, ann_file, workers, skip_bad_images=True, collate='pseudo_collate'):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('mmdet')
    pipeline = [
        dict(type='SafeLoadImageFromFile', skip_bad_images=skip_bad_images),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='FastMinIoURandomCrop'),
        dict(type='Resize', scale=(32, 32), keep_ratio=False),
        dict(type='FastRandomFlip', prob=0.5),
        dict(type='FastPhotoMetricDistortion'),
        dict(type='PackDetInputs')
    ]
    dataset = dict(type='CocoDataset', data_root=str(folder), ann_file=ann_file,
                   data_prefix=dict(img=''), metainfo=dict(classes=('thing', )),
                   filter_cfg=dict(filter_empty_gt=False), pipeline=pipeline)
    return Runner.build_dataloader(
        dict(batch_size=2, num_workers=workers, persistent_workers=workers > 0,
             sampler=dict(type='DefaultSampler', shuffle=False), dataset=dataset,
             collate_fn=dict(type=collate)), seed=0)


@pytest.mark.parametrize('workers', [0, 2])
def test_bad_image_skipped_with_a_warning(tmp_path, capfd, workers):
    # A fresh current logger: one left by an earlier test may write to a stream capfd does not see
    from mmengine.logging import MMLogger
    MMLogger.get_instance(f'bad_image_{workers}_{tmp_path.name}', log_level='INFO')
    ann_file, bad = tiny_coco(tmp_path, 'truncated')
    paths = [sample.img_path for batch in ssd_loader(tmp_path, ann_file, workers)
             for sample in batch['data_samples']]
    assert len(paths) == 4 and bad not in paths  # another image was loaded in its place
    empty = [s for b in ssd_loader(tmp_path, ann_file, 0) for s in b['data_samples']
             if s.img_path.endswith('2.jpg')]
    assert empty and len(empty[0].gt_instances) == 0  # the image without boxes went through
    log = ''.join(capfd.readouterr())
    assert f"skipped image '{bad}': it is a truncated JPEG file" in log
    assert 'skipped by this process so far' in log


def first_error(loader):
    """The message of the BadImageError that iterating ``loader`` raises."""
    iterator = iter(loader)
    try:
        for _ in iterator:
            pass
    except BadImageError as exc:
        return str(exc)
    finally:
        # End the workers now: the exception's traceback keeps the iterator in a reference cycle,
        # and PyTorch's shutdown of workers from the garbage collector waits seconds for each.
        getattr(iterator, '_shutdown_workers', lambda: None)()
    raise AssertionError('no BadImageError')


@pytest.mark.parametrize('workers', [0, 2])
@pytest.mark.parametrize('bad', ['truncated', 'garbage'])
def test_bad_image_error_names_the_file(tmp_path, workers, bad):
    ann_file, path = tiny_coco(tmp_path, bad)
    message = first_error(ssd_loader(tmp_path, ann_file, workers, skip_bad_images=False))
    assert message.startswith(f"image '{path}' ") and 'skip_bad_images=True' in message
    assert '\n' not in message and 'Traceback' not in message  # also from a worker process
    assert ('truncated' in message) if bad == 'truncated' else ('cannot be decoded' in message)


def test_training_process_ends_with_one_error_line(tmp_path):
    # what tools/train.py does with a bad image and skip_bad_images=False: the worker's error
    # reaches the main process, which prints one error line and exits promptly (no hang)
    ann_file, path = tiny_coco(tmp_path, 'truncated')
    script = (
        'import sys; sys.path.insert(0, "tests")\n'
        'from pathlib import Path\n'
        'from test_ssd_transforms import ssd_loader\n'
        'from iresnet_mmdet.errors import run_main\n'
        f'loader = ssd_loader(Path({str(tmp_path)!r}), {ann_file!r}, 2, skip_bad_images=False)\n'
        'run_main(lambda: [None for _ in loader])\n')
    result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                            text=True, env=tool_env(), timeout=120)
    assert_one_line_error(result, f"image '{path}' is a truncated JPEG file")


def test_missing_image_is_named(tmp_path):
    with pytest.raises(BadImageError, match=r"image '.*nothing\.jpg' cannot be read"):
        SafeLoadImageFromFile(skip_bad_images=False)(
            dict(img_path=osp.join(tmp_path, 'nothing.jpg')))


# ----------------------------------------------------------------------------------------------
# Packed collate: the same batches, one shared block per dtype
# ----------------------------------------------------------------------------------------------


def batch_tensors(batch):
    """Every tensor of a batch: inputs, then each sample's boxes and labels."""
    tensors = list(batch['inputs'])
    for sample in batch['data_samples']:
        for instances in (sample.gt_instances, sample.ignored_instances):
            tensors += [instances.bboxes.tensor, instances.labels]
    return tensors


@pytest.mark.parametrize('workers', [0, 2])
def test_packed_collate_same_batches(tmp_path, workers):
    from mmengine.runner import set_random_seed
    ann_file, _ = tiny_coco(tmp_path)
    runs = []
    for collate in ('pseudo_collate', 'packed_pseudo_collate'):
        # same seeds (this process's and mmengine's worker seeds, no shuffling): same draws
        set_random_seed(0)
        runs.append([batch_tensors(b) for b in ssd_loader(tmp_path, ann_file, workers,
                                                          collate=collate)])
    plain, packed = runs
    assert len(plain) == len(packed) == 2
    for expected, got in zip(plain, packed):
        assert len(expected) == len(got)
        for a, b in zip(expected, got):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        storages = {t.untyped_storage().data_ptr() for t in got if t.numel()}
        # in a worker: one block for the float32 tensors, one for the int64 labels
        assert len(storages) == (2 if workers else len([t for t in got if t.numel()]))
