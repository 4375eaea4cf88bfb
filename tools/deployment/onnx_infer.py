"""Detect objects with an exported detector, using onnxruntime only (no torch, no mmdet).

Examples::

    .venv/bin/python tools/deployment/onnx_infer.py model.onnx a.jpg b.jpg --out-dir results/
    .venv/bin/python tools/deployment/onnx_infer.py model.onnx val/*.jpg --score-thr 0.3

For each image, ``OUT_DIR/<image name>.png`` shows the boxes with class names and scores;
``OUT_DIR/detections.json`` holds all detections in COCO result format (``image_id``: from
``--ann-file`` when given, else the number in the file name when it is one, else the file name;
``bbox``: x, y, w, h in the image's pixels).
The model must come from ``tools/deployment/export_onnx.py`` (it stores the class names, the score
threshold and the input size in the ONNX metadata). Bad input ends with one ``error:`` line and
exit status 2, before any output file is written.
"""
import argparse
import importlib.util
import json
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


def read_ann_ids(runtime, ann_file):
    """``(file name -> image id, category name -> id)`` of a COCO annotation file."""
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        images = {osp.basename(im['file_name']): im['id'] for im in coco['images']}
        return images, {cat['name']: cat['id'] for cat in coco['categories']}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise runtime.DeployError(f"--ann-file '{ann_file}' is not a readable COCO annotation "
                                  f'file ({exc})') from None


def image_ids(runtime, paths, ann_images):
    """The COCO image id of each path: from the annotation file, else the number in its name."""
    ids = []
    for path in paths:
        name = osp.basename(path)
        if ann_images is not None:
            if name not in ann_images:
                raise runtime.DeployError(f"image '{name}' is not in the --ann-file")
            ids.append(ann_images[name])
            continue
        stem = osp.splitext(name)[0]
        ids.append(int(stem) if stem.isdigit() else name)
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
    write_atomic = load_module('atomic').write_atomic
    detector = runtime.OnnxDetector(args.model, args.threads)
    for path in args.images:  # every image readable before anything is written
        runtime.read_image(path)
    if osp.exists(args.out_dir) and not osp.isdir(args.out_dir):
        raise runtime.DeployError(f"--out-dir '{args.out_dir}' is a file; give a directory")
    ann_images, ann_categories = (read_ann_ids(runtime, args.ann_file) if args.ann_file
                                  else (None, None))
    ids = image_ids(runtime, args.images, ann_images)
    categories = category_ids(runtime, detector, ann_categories)
    import cv2
    results = []
    for path, image_id in zip(args.images, ids):
        image = runtime.read_image(path)
        detections = detector.detect(image, args.score_thr)
        results += runtime.coco_results(image_id, detections, categories)
        drawn = runtime.draw_detections(image, detections, detector.classes)
        name = osp.splitext(osp.basename(path))[0] + '.png'
        write_atomic(osp.join(args.out_dir, name), lambda tmp, drawn=drawn: cv2.imwrite(tmp, drawn))
        print(f'{path}: {len(detections["scores"])} detections')
    json_path = osp.join(args.out_dir, 'detections.json')

    def write_json(tmp):
        with open(tmp, 'w') as f:
            json.dump(results, f)

    write_atomic(json_path, write_json)
    print(f'wrote {len(args.images)} images and {json_path} ({len(results)} detections)')
    return 0


if __name__ == '__main__':
    _runtime = load_runtime()
    load_module('errors').run_main(lambda: main(runtime=_runtime),
                                   bad_input=(_runtime.DeployError, ))
