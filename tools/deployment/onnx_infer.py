"""Detect objects with an exported detector, using onnxruntime only (no torch, no mmdet).

Examples::

    .venv/bin/python tools/deployment/onnx_infer.py model.onnx a.jpg b.jpg --out-dir results/
    .venv/bin/python tools/deployment/onnx_infer.py model.onnx val/*.jpg --score-thr 0.3

For each image, ``OUT_DIR/<its path relative to the inputs' common folder>.png`` shows the boxes
with class names and scores (``a/x.jpg`` and ``b/x.jpg`` give ``OUT_DIR/a/x.png`` and
``OUT_DIR/b/x.png``; ``x.jpg`` and ``x.png`` of one folder give ``x.jpg.png`` and ``x.png.png``).
``OUT_DIR/detections.json`` holds all detections in COCO result format (``bbox``: x, y, w, h in
the image's pixels). ``image_id``: with ``--ann-file``, the id of the image whose ``file_name`` ends
the input's path (the longest such); else the number in the file name when it is one, else the
file name; if that gives two inputs the same id, every id is the picture's relative path instead.
The model must come from ``tools/deployment/export_onnx.py`` (it stores the class names, the score
threshold and the input size in the ONNX metadata). Bad input ends with one ``error:`` line and
exit status 2, before any output file is written.
"""
import argparse
import importlib.util
import json
import math
import os.path as osp

# The package's modules are loaded by their paths: importing the iresnet_mmdet package would import
# mmdet and torch, which this tool must work without. These three import the standard library,
# numpy, OpenCV and onnxruntime only.
_PACKAGE = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'iresnet_mmdet')


def load_module(*parts):
    """A module of the package, loaded from its file (``load_module('deploy', 'runtime')``)."""
    spec = importlib.util.spec_from_file_location('iresnet_mmdet_' + '_'.join(parts),
                                                  osp.join(_PACKAGE, *parts) + '.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_runtime():
    return load_module('deploy', 'runtime')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Detect objects with an exported ONNX detector')
    parser.add_argument('model', help='ONNX file written by tools/deployment/export_onnx.py')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out-dir', default='onnx_results', help='where to write the results')
    parser.add_argument('--score-thr', type=float,
                        help="draw and write detections scoring above this (default: the "
                        "config's test_cfg.score_thr, stored in the model)")
    parser.add_argument('--ann-file',
                        help='COCO annotation file of the images: take the image and category '
                        'ids of detections.json from it')
    parser.add_argument('--threads', type=int, help='onnxruntime threads')
    return parser.parse_args(argv)


def check_args(runtime, args):
    """Numeric options in range, each image given once."""
    if args.score_thr is not None and not (math.isfinite(args.score_thr)
                                           and 0 <= args.score_thr <= 1):
        raise runtime.DeployError(f'--score-thr {args.score_thr:g} is not a score; give a number '
                                  'in [0, 1]')
    if args.threads is not None and args.threads < 1:
        raise runtime.DeployError(f'--threads {args.threads} is not a thread count; give 1 or more')
    seen = set()
    for path in args.images:
        key = osp.realpath(path)
        if key in seen:
            raise runtime.DeployError(f"image '{path}' is given twice")
        seen.add(key)


def output_names(paths):
    """The picture file of each input: its path relative to the inputs' common folder, ``.png``
    instead of its extension (kept where two inputs would share a name)."""
    folders = [osp.dirname(osp.abspath(p)) for p in paths]
    common = osp.commonpath(folders) if folders else ''
    relative = [osp.relpath(osp.abspath(p), common) for p in paths]
    names = [osp.splitext(r)[0] + '.png' for r in relative]
    clashing = {n for n in names if names.count(n) > 1}
    return [r + '.png' if n in clashing else n for r, n in zip(relative, names)]


def read_ann_ids(runtime, ann_file):
    """``(file_name -> image id, category name -> id)`` of a COCO annotation file."""
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        images = {osp.normpath(im['file_name']): im['id'] for im in coco['images']}
        return images, {cat['name']: cat['id'] for cat in coco['categories']}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise runtime.DeployError(f"--ann-file '{ann_file}' is not a readable COCO annotation "
                                  f'file ({exc})') from None


def _ann_image_id(runtime, path, ann_images):
    """The id of the annotated image whose file_name ends ``path`` (component-wise, longest)."""
    parts = osp.normpath(osp.abspath(path)).split(osp.sep)
    for start in range(len(parts)):
        name = osp.sep.join(parts[start:])
        if name in ann_images:
            return ann_images[name]
    raise runtime.DeployError(f"image '{path}' is not in the --ann-file (no file_name ends its "
                              'path)')


def image_ids(runtime, paths, ann_images, names):
    """The COCO image id of each path (see the module docstring); ``names``: its picture's
    relative path, the id where the file names alone would give two inputs the same id."""
    if ann_images is not None:
        return [_ann_image_id(runtime, path, ann_images) for path in paths]
    ids = []
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        ids.append(int(stem) if stem.isdigit() else osp.basename(path))
    if len(set(ids)) < len(ids):
        return [osp.splitext(name)[0] for name in names]
    return ids


def category_ids(runtime, detector, ann_categories):
    """The COCO category id of each class."""
    if ann_categories is None:
        return detector.meta['category_ids'] or list(range(1, len(detector.classes) + 1))
    missing = [name for name in detector.classes if name not in ann_categories]
    if missing:
        raise runtime.DeployError(f"class '{missing[0]}' of the model is not a category of the "
                                  '--ann-file')
    return [ann_categories[name] for name in detector.classes]


def main(argv=None, runtime=None):
    args = parse_args(argv)
    runtime = runtime or load_runtime()
    atomic = load_module('atomic')
    check_args(runtime, args)
    atomic.check_output(args.out_dir, '--out-dir', runtime.DeployError, directory=True)
    detector = runtime.OnnxDetector(args.model, args.threads)
    for path in args.images:  # every image readable before anything is written
        runtime.read_image(path)
    ann_images, ann_categories = (read_ann_ids(runtime, args.ann_file) if args.ann_file
                                  else (None, None))
    names = output_names(args.images)
    ids = image_ids(runtime, args.images, ann_images, names)
    categories = category_ids(runtime, detector, ann_categories)
    import cv2
    results, failed = [], []
    for path, image_id, name in zip(args.images, ids, names):
        image = runtime.read_image(path)
        detections = detector.detect(image, args.score_thr)
        results += runtime.coco_results(image_id, detections, categories)
        drawn = runtime.draw_detections(image, detections, detector.classes)

        def write_png(tmp, drawn=drawn):
            if not cv2.imwrite(tmp, drawn):
                raise OSError(f'OpenCV could not write {tmp}')

        try:
            atomic.write_output(osp.join(args.out_dir, name), write_png, runtime.DeployError)
        except runtime.DeployError as exc:  # the detections are still written below
            failed.append(str(exc))
        print(f'{path}: {len(detections["scores"])} detections')
    json_path = osp.join(args.out_dir, 'detections.json')

    def write_json(tmp):
        with open(tmp, 'w') as f:
            json.dump(results, f)

    try:
        atomic.write_output(json_path, write_json, runtime.DeployError)
    except runtime.DeployError as exc:
        failed.insert(0, str(exc))
    if failed:
        more = f' (and {len(failed) - 3} more)' if len(failed) > 3 else ''
        raise runtime.DeployError('; '.join(failed[:3]) + more)
    print(f'wrote {len(args.images)} images and {json_path} ({len(results)} detections)')
    return 0


if __name__ == '__main__':
    _runtime = load_runtime()
    load_module('errors').run_main(lambda: main(runtime=_runtime),
                                   bad_input=(_runtime.DeployError, ))
