"""docs/custom_dataset.md, 'Detect objects in your own images': mmdet's DetInferencer and the ONNX
path (export_onnx.py + onnx_infer.py) on images of one's own, with a trained checkpoint.

DetInferencer always runs on the custom-dataset example (configs/custom/ssd300_iresnet50_custom.py
edited as the page says, tiny backbone) trained here for two iterations on the dataset of
test_custom_dataset.py. The comparison of both paths uses the checkpoint of ``make demo`` when it
exists (``work_dirs/ssd300_iresnet18_synthetic``: confident, meaningful detections), else that
short run. The two paths are independent implementations (mmdet's pipeline and model; the exported
graph with its own image loading and box mapping under onnxruntime): each one's confident
detections must be among the other's.
"""
import json
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from test_custom_dataset import draw_image, tiny_ssd_config, write_split
from test_deploy import export
from tool_runs import tool_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
INFER = osp.join(ROOT, 'tools', 'deployment', 'onnx_infer.py')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')
DEMO_DIR = osp.join(ROOT, 'work_dirs', 'ssd300_iresnet18_synthetic')
TOP = 10  # detections per image compared, the most confident of DetInferencer's
SCORE_TOL = 2e-3


def demo_checkpoint():
    marker = osp.join(DEMO_DIR, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        path = f.read().strip()
    return path if osp.isfile(path) else None


@pytest.fixture(scope='module')
def custom_detector(tmp_path_factory):
    """(config file, checkpoint, class names): the custom example after two training steps."""
    from mmengine.runner import Runner
    root = tmp_path_factory.mktemp('my_dataset')
    (root / 'annotations').mkdir()
    write_split(root, 'train', (1, 2))
    write_split(root, 'val', (3, 4))
    work_dir = tmp_path_factory.mktemp('work_dir')
    cfg = tiny_ssd_config(root, work_dir)
    cfg.train_cfg.update(max_epochs=2, val_interval=2)
    Runner.from_cfg(cfg).train()
    config = str(work_dir / 'custom_tiny.py')
    cfg.dump(config)
    return config, str(work_dir / 'epoch_2.pth'), tuple(cfg.metainfo.classes)


@pytest.fixture(scope='module')
def detector(custom_detector):
    """The demo's trained SSD300 when ``make demo`` has run, else the custom one."""
    from mmengine.config import Config
    checkpoint = demo_checkpoint()
    if checkpoint:
        return DEMO_CONFIG, checkpoint, tuple(Config.fromfile(DEMO_CONFIG).metainfo.classes)
    return custom_detector


@pytest.fixture(scope='module')
def my_images(tmp_path_factory):
    """Three PNG images of shapes on a noisy background (no exactly tied scores in flat areas)."""
    folder = tmp_path_factory.mktemp('my_images')
    rng = np.random.default_rng(0)
    paths = []
    for seed in (11, 12, 13):
        path = str(folder / f'photo_{seed}.png')
        draw_image(path, seed)
        image = cv2.imread(path).astype(np.int16) + rng.integers(-4, 5, (160, 160, 3))
        cv2.imwrite(path, np.clip(image, 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


def detinferencer(detector, images, out_dir):
    from mmdet.apis import DetInferencer
    config, checkpoint, _ = detector
    inferencer = DetInferencer(model=config, weights=checkpoint, device='cpu',
                               show_progress=False)
    result = inferencer(images, out_dir=str(out_dir), no_save_pred=False, pred_score_thr=0.3)
    return inferencer, result, out_dir


@pytest.fixture(scope='module')
def torch_results(detector, my_images, tmp_path_factory):
    return detinferencer(detector, my_images, tmp_path_factory.mktemp('predictions'))


@pytest.fixture(scope='module')
def onnx_results(detector, my_images, tmp_path_factory):
    config, checkpoint, _ = detector
    work = tmp_path_factory.mktemp('onnx')
    model = work / 'my_detector.onnx'
    status, text = export(config, checkpoint, '--out', model)  # in this process: no imports
    assert status == 0, text
    run([INFER, model, *my_images, '--out-dir', work / 'results'])
    with open(work / 'results' / 'detections.json') as f:
        return model, json.load(f), work / 'results'


def run(argv):
    result = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True,
                            cwd=ROOT, env=tool_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def test_detinferencer_on_the_custom_example(custom_detector, my_images, tmp_path):
    inferencer, result, out_dir = detinferencer(custom_detector, my_images, tmp_path)
    assert tuple(inferencer.model.dataset_meta['classes']) == custom_detector[2]
    assert len(result['predictions']) == len(my_images)
    for path, prediction in zip(my_images, result['predictions']):
        name = osp.basename(path)
        assert osp.isfile(out_dir / 'vis' / name)
        with open(out_dir / 'preds' / (osp.splitext(name)[0] + '.json')) as f:
            assert json.load(f) == prediction
        assert prediction['labels'] and all(0 <= lab < len(custom_detector[2])
                                            for lab in prediction['labels'])
        boxes = np.array(prediction['bboxes'])
        assert boxes.min() >= 0 and boxes.max() <= 160 + 1e-3  # the image's own pixels


def test_onnx_model_carries_the_class_names(detector, onnx_results):
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(onnx_results[0])).metadata_props}
    assert tuple(json.loads(meta['iresnet_mmdet.classes'])) == detector[2]


def test_onnx_path_finds_what_detinferencer_finds(detector, my_images, torch_results,
                                                  onnx_results):
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(onnx_results[0])).metadata_props}
    category_ids = json.loads(meta['iresnet_mmdet.category_ids'] or 'null') or list(
        range(1, len(detector[2]) + 1))
    compared = 0
    for path, prediction in zip(my_images, torch_results[1]['predictions']):
        image_id = osp.basename(path)
        onnx_dets = [(category_ids.index(d['category_id']), d['score'], xywh_to_xyxy(d['bbox']))
                     for d in onnx_results[1] if d['image_id'] == image_id]
        torch_dets = list(zip(prediction['labels'], prediction['scores'], prediction['bboxes']))
        threshold = sorted(s for _, s, _ in torch_dets)[-min(TOP, len(torch_dets))] + SCORE_TOL
        for ours, theirs in ((onnx_dets, torch_dets), (torch_dets, onnx_dets)):
            for label, score, box in ours:
                if score > threshold:
                    compared += 1
                    assert any(lab == label and abs(s - score) <= SCORE_TOL and iou(b, box) > 0.9
                               for lab, s, b in theirs), (image_id, label, score, box)
    assert compared >= len(my_images)


def xywh_to_xyxy(box):
    x, y, w, h = box
    return [x, y, x + w, y + h]


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0
