"""Speed of a config's training data pipeline: ms per transform, DataLoader img/s; no data needed.

Writes ``--images`` synthetic JPEG images once to a temporary directory (drawn shapes on a noisy
gradient, ``tools/data/make_synthetic_coco.py``'s drawing) with COCO-format annotations, points the
config's train dataset at them, and measures:

* CPU ms per transform, in this process: every image through the config's train pipeline and
  through the same pipeline with mmdet's transforms in place of the plugin's faster ones
  (``replaces`` of ``iresnet_mmdet.datasets``), interleaved image by image so that load changes on
  the machine hit both alike, with one torch thread and OpenCV's threads as in a DataLoader worker
  (CPU time of the process, which other load on the machine distorts less than wall time);
* img/s of the config's train DataLoader for each ``--workers`` count, built and set up as
  ``Runner.train`` does: mmengine's ``set_multi_processing`` (start method, ``cv2.setNumThreads``)
  from the config's ``env_cfg``, the random seed, ``Runner.build_dataloader`` with its
  ``worker_init_fn`` seeding, and the config's batch size, sampler, collate function,
  ``pin_memory``, ``persistent_workers`` and ``prefetch_factor``. The first round of batches (one
  per worker) is not timed; then ``workers`` x R batches are, R rounds covering at least
  ``--images`` images. The dataset is repeated (``RepeatDataset``) so that no epoch ends inside the
  measurement. ``--reference`` measures mmdet's transforms the same way; ``--repeats R`` times
  every count R times, round-robin, and keeps the best round (the least disturbed by other load);
  ``--loader-only`` leaves out the per-transform timing.

Image sizes: ``--size WxH`` for all images, or by default an approximation of COCO train2017's
(longer side 640 px; mostly 4:3 and 3:2 landscape, some portrait, square, 16:9 and 500x375). The
JPEG quality (97) gives about COCO's 0.5 bytes per pixel: decoding time grows with the file size.

Usage::

    .venv/bin/python benchmarks/data_pipeline.py CONFIG [--workers 0,1,2] [--images 512]
        [--size WxH] [--reference] [--repeats 1] [--loader-only] [--seed 0] [--json FILE]
        [--cfg-options KEY=VALUE ...]

Bad input (a missing config, a bad worker list or size, an unwritable ``--json``) gives one
``error:`` line, exit status 2, and nothing else is done.
"""
import argparse
import contextlib
import copy
import importlib.util
import inspect
import io
import json
import math
import multiprocessing
import os
import os.path as osp
import sys
import tempfile
import time
from contextlib import contextmanager

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'data'))

import warnings  # noqa: E402

# mmengine 0.10.7 imports pkg_resources, which setuptools >= 80 flags as deprecated
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
# PyTorch's notes on a config's pin_memory without a GPU and on more workers than cores: both are
# what is being measured here
warnings.filterwarnings('ignore', message="'pin_memory' argument is set as true")
warnings.filterwarnings('ignore', message='This DataLoader will create')

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from iresnet_mmdet.atomic import write_output  # noqa: E402
from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402

# (width, height, share): an approximation of COCO train2017's image sizes. Published statistics:
# longer side 640 px for nearly all images, 90 % between 167,500 and 355,840 pixels, height/width
# mostly 0.6-1.5.
COCO_SIZES = ((640, 480, 0.40), (640, 427, 0.25), (480, 640, 0.10), (427, 640, 0.10),
              (640, 640, 0.05), (640, 360, 0.05), (500, 375, 0.05))
JPEG_QUALITY = 97
MAX_OBJECTS = 12  # drawn per image before overlap rejection: about COCO's 7 objects on average
MIN_BOX_SIDE = 4  # pixels left of a box after cutting the drawn square to the image size


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------


def parse_workers(text):
    """``'0,2,4'`` -> ``[0, 2, 4]``."""
    try:
        counts = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 0:
        raise ToolError(f"--workers '{text}': give worker counts >= 0 separated by commas, "
                        'e.g. --workers 0,2,4')
    return counts


def parse_size(text):
    """``'640x480'`` -> ``(640, 480)``; None -> None (COCO's sizes)."""
    if text is None:
        return None
    parts = text.lower().split('x')
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or min(map(int, parts)) < 64:
        raise ToolError(f"--size '{text}': give WIDTHxHEIGHT in pixels, each at least 64 "
                        '(e.g. --size 640x480)')
    return int(parts[0]), int(parts[1])


def check_json_path(path):
    """Refuse a ``--json`` path that cannot be written, before any work (nothing is left there)."""
    if path is None:
        return
    folder = osp.dirname(osp.abspath(path))
    if osp.isdir(path):
        raise ToolError(f'--json {path}: is a directory; give a file name')
    if not osp.isdir(folder):
        raise ToolError(f"--json {path}: directory '{folder}' does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ToolError(f"--json {path}: cannot write in '{folder}' ({exc.strerror}); give a "
                        'path you can write') from None
    if osp.exists(path) and not os.access(path, os.W_OK):
        raise ToolError(f'--json {path}: the file is not writable; give a path you can write')


def load_config(path, options):
    """The config with ``--cfg-options`` merged, its train dataloader and pipeline checked."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise ToolError(f"config file '{path}' does not exist")
    try:
        cfg = Config.fromfile(path)
        cfg.merge_from_dict(options)
    except SyntaxError as exc:
        raise ToolError(f"config file '{path}' has a syntax error: {exc}") from None
    except (TypeError, KeyError) as exc:
        raise ToolError(f'--cfg-options cannot be merged into the config: {exc}') from None
    loader = cfg.get('train_dataloader')
    if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
        raise ToolError(f"config file '{path}' has no train_dataloader with a dataset")
    if not isinstance(leaf_dataset(loader['dataset']).get('pipeline'), list):
        raise ToolError(f"config file '{path}': its train dataset has no pipeline")
    return cfg


def leaf_dataset(dataset):
    """The innermost dataset config under dataset wrappers (``RepeatDataset``, ...)."""
    while isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    return dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file with a train_dataloader')
    parser.add_argument('--workers', default='0,1,2',
                        help='comma-separated DataLoader worker counts (default 0,1,2)')
    parser.add_argument('--images', type=int, default=512,
                        help='synthetic images written, and about the number timed per count')
    parser.add_argument('--size', help='WIDTHxHEIGHT of every image (default: COCO\'s sizes)')
    parser.add_argument('--loader-only', action='store_true',
                        help='time the DataLoader only, not each transform')
    parser.add_argument('--reference', action='store_true',
                        help="also time the DataLoader with mmdet's transforms")
    parser.add_argument('--repeats', type=int, default=1,
                        help='rounds of DataLoader timings (round-robin); the best one is shown')
    parser.add_argument('--seed', type=int, default=0, help='random seed (images and runner)')
    parser.add_argument('--json', help='write the measurements to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries, e.g. train_dataloader.pin_memory=False')
    try:
        args = parser.parse_args(argv)
    except ValueError:  # mmengine's DictAction on an option without '='
        raise ToolError('--cfg-options: give KEY=VALUE pairs, e.g. '
                        'train_dataloader.pin_memory=False') from None
    args.worker_counts = parse_workers(args.workers)
    args.image_size = parse_size(args.size)
    if args.images < 1 or args.repeats < 1:
        raise ToolError(f'--images {args.images} --repeats {args.repeats}: give at least 1 each')
    check_json_path(args.json)
    return args


# ----------------------------------------------------------------------------------------------
# Synthetic data
# ----------------------------------------------------------------------------------------------


def image_sizes(count, size, seed):
    """``count`` (width, height) pairs: ``size`` for all, or drawn from :data:`COCO_SIZES`."""
    if size is not None:
        return [size] * count
    rng = np.random.default_rng([seed, 1])
    shares = np.array([share for _, _, share in COCO_SIZES])
    picks = rng.choice(len(COCO_SIZES), size=count, p=shares / shares.sum())
    return [COCO_SIZES[i][:2] for i in picks]


def draw_image(task):
    """Write one image; return its ``(file name, width, height, objects)``.

    The shapes are drawn on a square of the longer side and cut to ``width x height``; boxes are
    clipped to the image, and an image is redrawn until it keeps a box.
    """
    import cv2
    from make_synthetic_coco import make_image
    index, width, height, seed, folder = task
    rng = np.random.default_rng([seed, 2, index])
    while True:
        image, objects = make_image(rng, max(width, height), MAX_OBJECTS)
        kept = []
        for category, (x, y, w, h) in objects:
            w, h = min(x + w, width) - x, min(y + h, height) - y
            if w >= MIN_BOX_SIDE and h >= MIN_BOX_SIDE:
                kept.append((category, [x, y, w, h]))
        if kept:
            break
    pixels = np.asarray(image)[:height, :width, ::-1]  # RGB -> BGR for OpenCV
    name = f'{index:06d}.jpg'
    cv2.imwrite(osp.join(folder, name), pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return name, width, height, kept


def write_dataset(folder, sizes, classes, seed):
    """Write the images (in parallel) and ``annotations.json``; return the annotation file."""
    os.makedirs(osp.join(folder, 'images'))
    tasks = [(i, w, h, seed, osp.join(folder, 'images')) for i, (w, h) in enumerate(sizes)]
    processes = min(len(tasks), os.cpu_count() or 1)
    with multiprocessing.get_context('fork').Pool(processes) as pool:
        drawn = pool.map(draw_image, tasks, chunksize=max(1, len(tasks) // (4 * processes)))
    images, annotations = [], []
    for image_id, (name, width, height, objects) in enumerate(drawn, start=1):
        images.append(dict(id=image_id, file_name=name, width=width, height=height))
        for category, (x, y, w, h) in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=category % len(classes) + 1, bbox=[x, y, w, h],
                                    area=w * h, iscrowd=0))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
    ann_file = osp.join(folder, 'annotations.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return ann_file


def dataset_classes(dataset_cfg):
    """The class names the config's dataset uses (its metainfo, else its class's METAINFO)."""
    from mmdet.registry import DATASETS
    classes = (dataset_cfg.get('metainfo') or {}).get('classes')
    if not classes:
        dataset_cls = DATASETS.get(dataset_cfg['type'])
        classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    if not classes:
        raise ToolError(f"the train dataset ({dataset_cfg['type']}) names no classes; give it "
                        'metainfo=dict(classes=(...))')
    return tuple(classes)


def point_to(dataset_cfg, folder, ann_file):
    """Point the (leaf) dataset config at the synthetic images."""
    dataset_cfg.update(data_root=folder, ann_file=ann_file, data_prefix=dict(img='images/'))


# ----------------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------------


def reference_pipeline(pipeline):
    """The pipeline with mmdet's transform in place of each plugin transform that ``replaces`` one
    (arguments the mmdet transform does not take, e.g. ``skip_bad_images``, dropped)."""
    from mmdet.registry import TRANSFORMS
    result = []
    for step in pipeline:
        cls = TRANSFORMS.get(step['type'])
        replaced = getattr(cls, 'replaces', None)
        if replaced:
            accepted = inspect.signature(TRANSFORMS.get(replaced).__init__).parameters
            step = {k: v for k, v in step.items() if k == 'type' or k in accepted}
            step['type'] = replaced
        result.append(step)
    return result


@contextmanager
def worker_threads():
    """One torch thread, as a DataLoader worker has (torch sets it in every worker)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_transforms(dataset, pipelines):
    """CPU ms per transform and image for each pipeline, over every image of ``dataset``.

    CPU time of this process (one thread), so that other load on the machine distorts it less.

    Args:
        dataset: The built (fully initialised) dataset, for ``get_data_info``.
        pipelines (dict): name -> list of built transforms.

    Returns:
        dict: name -> list of ms per image, one per transform.
    """
    totals = {name: np.zeros(len(steps)) for name, steps in pipelines.items()}
    done = {name: 0 for name in pipelines}
    names = list(pipelines)
    with worker_threads():
        for index in range(len(dataset)):
            for name in names[index % 2:] + names[:index % 2]:  # alternate who goes first
                results = copy.deepcopy(dataset.get_data_info(index))
                for k, step in enumerate(pipelines[name]):
                    start = time.process_time()
                    results = step(results)
                    totals[name][k] += time.process_time() - start
                    if results is None:
                        break
                else:
                    done[name] += 1
    return {name: list(1e3 * totals[name] / max(done[name], 1)) for name in names}


# ----------------------------------------------------------------------------------------------
# DataLoader
# ----------------------------------------------------------------------------------------------


def loader_config(cfg, workers, repeat):
    """The config's train_dataloader with ``workers`` workers over ``repeat`` x the images."""
    loader = copy.deepcopy(cfg.train_dataloader)
    loader['num_workers'] = workers
    if workers == 0:  # options PyTorch allows only with workers
        loader.pop('persistent_workers', None)
        loader.pop('prefetch_factor', None)
    loader['dataset'] = dict(type='RepeatDataset', times=repeat, dataset=loader['dataset'])
    return loader


def time_loader(cfg, workers, images, seed):
    """img/s of the config's train DataLoader with ``workers`` workers (see the module docstring).

    Returns:
        dict: ``workers``, ``img_per_s``, ``batches`` timed, ``batch_size``, ``seconds``, and
        ``first_batch_s``: from starting the workers to the first batch (what an epoch costs in
        addition when the workers are not persistent).
    """
    from mmengine.runner import Runner
    batch = cfg.train_dataloader['batch_size']
    per_round = max(workers, 1)
    warmup = per_round
    timed = per_round * math.ceil(images / (batch * per_round))
    dataset_size = images  # every image has boxes: none is filtered out
    repeat = math.ceil((warmup + timed + per_round) * batch / dataset_size)
    with quiet():
        loader = Runner.build_dataloader(loader_config(cfg, workers, repeat), seed=seed)
    if hasattr(loader.sampler, 'set_epoch'):
        loader.sampler.set_epoch(0)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first_batch = time.perf_counter() - start
    for _ in range(warmup - 1):
        next(iterator)
    start = time.perf_counter()
    for _ in range(timed):
        next(iterator)
    seconds = time.perf_counter() - start
    del iterator, loader  # ends the workers
    return dict(workers=workers, img_per_s=timed * batch / seconds, batches=timed,
                batch_size=batch, seconds=seconds, first_batch_s=first_batch)


def quiet():
    """Silence pycocotools' progress lines while a dataset reads its annotations."""
    return contextlib.redirect_stdout(io.StringIO())


def time_loaders(configs, worker_counts, images, seed, repeats):
    """:func:`time_loader` for every (config, worker count), ``repeats`` rounds round-robin, so
    that load changes on the machine hit all alike; each row is the round with the most img/s
    (the least disturbed), with every round's img/s in ``img_per_s_runs``."""
    runs = {}
    for round_index in range(repeats):
        for name, config in configs:
            for workers in worker_counts:
                row = time_loader(config, workers, images, seed)
                runs.setdefault((name, workers), []).append(row)
                print(f"  round {round_index + 1}: {name}, {workers} workers: "
                      f"{row['img_per_s']:.0f} img/s", flush=True)
    rows = []
    for (name, workers), timed in runs.items():
        best = max(timed, key=lambda row: row['img_per_s'])
        rows.append(dict(pipeline=name, **best,
                         img_per_s_runs=[row['img_per_s'] for row in timed]))
    return rows


def setup_like_runner(cfg, seed):
    """What ``Runner.__init__`` sets up before building the train loop's DataLoader."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    from mmengine.utils.dl_utils import set_multi_processing
    env_cfg = cfg.get('env_cfg') or {}
    set_multi_processing(**env_cfg.get('mp_cfg', {}), distributed=False)
    set_random_seed(seed)
    init_default_scope(cfg.get('default_scope', 'mmdet'))


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or 'unknown'


def measure_transforms(cfg, reference):
    """``(names, times)``: the config's transform names and :func:`time_transforms` of the config's
    and the reference's pipelines over the config's (synthetic) train dataset."""
    from mmdet.registry import DATASETS, TRANSFORMS
    with quiet():
        dataset = DATASETS.build(dict(leaf_dataset(cfg.train_dataloader['dataset']), pipeline=[]))
        dataset.full_init()
    pipelines = {name: [TRANSFORMS.build(step) for step in
                        leaf_dataset(c.train_dataloader['dataset'])['pipeline']]
                 for name, c in (('config', cfg), ('mmdet', reference))}
    names = [type(step).__name__ for step in pipelines['config']]
    return names, time_transforms(dataset, pipelines)


def print_transforms(names, times):
    ours, mmdet = times['config'], times['mmdet']
    print('\nCPU ms per image and transform, one process (one torch thread, as in a DataLoader '
          'worker):')
    print('| transform (config) | mmdet | config | speed-up |')
    print('|---|---|---|---|')
    for name, before, after in zip(names, mmdet, ours):
        print(f'| {name} | {before:.2f} | {after:.2f} | {before / max(after, 1e-9):.2f}x |')
    before, after = sum(mmdet), sum(ours)
    print(f'| total | {before:.2f} ({1e3 / before:.0f} img/s) | {after:.2f} '
          f'({1e3 / after:.0f} img/s) | {before / after:.2f}x |')


def loader_settings(cfg):
    """The train DataLoader options that decide its speed, as the config gives them."""
    loader = cfg.train_dataloader
    collate = loader.get('collate_fn') or dict(type='pseudo_collate')
    return dict(batch_size=loader.get('batch_size'), collate_fn=collate.get('type'),
                pin_memory=loader.get('pin_memory', False),
                persistent_workers=loader.get('persistent_workers', False),
                prefetch_factor=loader.get('prefetch_factor'))


def print_loaders(rows, repeats):
    best = f', best of {repeats} rounds' if repeats > 1 else ''
    print(f'\nDataLoader img/s (set up as Runner.train; first round of batches not timed{best}):')
    print('| pipeline | workers | img/s | img/s per worker | first batch (s) | batches timed |')
    print('|---|---|---|---|---|---|')
    for row in rows:
        per_worker = row['img_per_s'] / max(row['workers'], 1)
        print(f"| {row['pipeline']} | {row['workers']} | {row['img_per_s']:.0f} | "
              f"{per_worker:.0f} | {row['first_batch_s']:.2f} | "
              f"{row['batches']} x {row['batch_size']} |")


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    if importlib.util.find_spec('PIL') is None:
        raise ToolError('Pillow draws the synthetic images: pip install pillow')
    setup_like_runner(cfg, args.seed)
    dataset_cfg = leaf_dataset(cfg.train_dataloader['dataset'])
    classes = dataset_classes(dataset_cfg)
    reference = copy.deepcopy(cfg)
    leaf_dataset(reference.train_dataloader['dataset'])['pipeline'] = reference_pipeline(
        dataset_cfg['pipeline'])
    sizes = image_sizes(args.images, args.image_size, args.seed)
    print(f"{args.config}: {args.images} images ({args.size or 'COCO sizes'}), workers "
          f'{args.worker_counts}, CPU: {cpu_name()} ({os.cpu_count()} logical cores), loader: '
          + ', '.join(f'{k}={v}' for k, v in loader_settings(cfg).items()), flush=True)
    with tempfile.TemporaryDirectory(prefix='data_pipeline_') as folder:
        start = time.perf_counter()
        ann_file = write_dataset(folder, sizes, classes, args.seed)
        print(f'images written in {time.perf_counter() - start:.1f} s', flush=True)
        for config in (cfg, reference):
            point_to(leaf_dataset(config.train_dataloader['dataset']), folder, ann_file)
        names, times = [], {'config': [], 'mmdet': []}
        if not args.loader_only:
            names, times = measure_transforms(cfg, reference)
            print_transforms(names, times)
        configs = (('config', cfg), ('mmdet', reference))[:2 if args.reference else 1]
        rows = time_loaders(configs, args.worker_counts, args.images, args.seed, args.repeats)
    print_loaders(rows, args.repeats)
    if args.json:
        record = dict(config=args.config, cpu=cpu_name(), cores=os.cpu_count(),
                      images=args.images, size=args.size or 'coco', seed=args.seed,
                      loader_settings=loader_settings(cfg),
                      transforms=[dict(transform=n, mmdet_ms=b, config_ms=a)
                                  for n, b, a in zip(names, times['mmdet'], times['config'])],
                      loaders=rows)
        write_output(args.json, lambda tmp: _write_json(tmp, record), ToolError)
        print(f'\nwritten to {args.json}')
    return 0


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


if __name__ == '__main__':
    run_main(main)
