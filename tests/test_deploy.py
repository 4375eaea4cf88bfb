"""ONNX export (tools/deployment/export_onnx.py) and onnxruntime inference (onnx_infer.py).

The models have random weights, with BN statistics measured on a few random images so that the
activations have a realistic scale. The reference is always mmdet's own PyTorch model.
"""
import contextlib
import copy
import glob
import importlib.util
import io
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXPORT = osp.join(ROOT, 'tools', 'deployment', 'export_onnx.py')
INFER = osp.join(ROOT, 'tools', 'deployment', 'onnx_infer.py')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')
DEMO_CLASSES = ['circle', 'square', 'triangle', 'cross', 'ring']
TRAINED_DIR = osp.join(ROOT, 'work_dirs', 'ssd300_iresnet18_synthetic')
NUM_VAL = 6
# Runs a tool with torch and the OpenMMLab packages made unimportable.
WITHOUT_TORCH = ("import runpy, sys\n"
                 "for name in ('torch', 'mmdet', 'mmengine', 'mmcv', 'iresnet_mmdet'):\n"
                 "    sys.modules[name] = None\n"
                 "sys.argv = sys.argv[1:]\n"
                 "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def load_tool(path):
    spec = importlib.util.spec_from_file_location(osp.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(*argv):
    """Run export_onnx.py in this process; returns (status, printed text)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = load_tool(EXPORT).main([str(a) for a in argv])
    return status, out.getvalue()


def run_tool(*argv):
    return subprocess.run([sys.executable, *[str(a) for a in argv]], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))


def report_numbers(text):
    """The figures of the verification report."""
    numbers = {}
    found = re.search(r'max relative error (\S+)', text)
    if found:
        numbers['raw'] = float(found.group(1))
    found = re.search(r'detections: (\d+)/(\d+) matched, max box error (\S+) px .* max score '
                      r'error (\S+) \(', text)
    if found:
        numbers.update(matched=int(found.group(1)), compared=int(found.group(2)),
                       box=float(found.group(3)), score=float(found.group(4)))
    found = re.search(r'bbox AP: PyTorch (\S+), onnxruntime (\S+) ', text)
    if found:
        numbers.update(ap_torch=float(found.group(1)), ap_onnx=float(found.group(2)))
    return numbers


def random_checkpoint(config, path, input_shape=(300, 300), seed=0):
    """Random weights, BN running statistics from 4 random images; saved as a checkpoint."""
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    import iresnet_mmdet  # noqa: F401
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    torch.manual_seed(seed)
    model = MODELS.build(Config.fromfile(config).model)
    MMLogger.get_current_instance().setLevel('ERROR')  # init_weights logs every parameter
    model.init_weights()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the calibration batch
            module.reset_running_stats()
    model.train()
    images = torch.rand(4, 3, *input_shape) * 255
    with torch.no_grad():
        model.extract_feat(model.data_preprocessor({'inputs': list(images)}, False)['inputs'])
    torch.save({'state_dict': model.state_dict()}, path)
    return model.eval()


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp('deploy')


@pytest.fixture(scope='module')
def synthetic_data(workdir):
    out = workdir / 'synthetic_coco'
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'data', 'make_synthetic_coco.py'),
                    '--out', str(out), '--num-train', '1', '--num-val', str(NUM_VAL)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope='module')
def demo_checkpoint(workdir):
    path = workdir / 'demo_random.pth'
    model = random_checkpoint(DEMO_CONFIG, path)
    return path, model


@pytest.fixture(scope='module')
def demo_onnx(workdir, synthetic_data, demo_checkpoint):
    out = workdir / 'demo.onnx'
    status, text = export(DEMO_CONFIG, demo_checkpoint[0], '--out', out, '--dynamic-batch',
                          '--verify', NUM_VAL, '--cfg-options',
                          f'test_dataloader.dataset.data_root={synthetic_data}/')
    return out, status, text


def test_export_verifies_against_pytorch(demo_onnx):
    _, status, text = demo_onnx
    assert status == 0 and 'result: PASSED' in text, text
    numbers = report_numbers(text)
    assert numbers['raw'] <= 1e-4
    assert numbers['compared'] > 50 * NUM_VAL and numbers['matched'] == numbers['compared']
    assert numbers['box'] <= 1e-2 and numbers['score'] <= 1e-4
    assert abs(numbers['ap_torch'] - numbers['ap_onnx']) <= 1e-3
    assert f'verify on {NUM_VAL} images (test set)' in text


def test_metadata_and_outputs(demo_onnx):
    import onnx
    model = onnx.load(str(demo_onnx[0]))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props['iresnet_mmdet.classes']) == DEMO_CLASSES
    assert float(props['iresnet_mmdet.score_thr']) == 0.05
    assert json.loads(props['iresnet_mmdet.input_shape']) == [300, 300]
    assert json.loads(props['iresnet_mmdet.category_ids']) == [1, 2, 3, 4, 5]
    assert [o.name for o in model.graph.output] == ['boxes', 'scores', 'labels', 'num_detections']
    assert 'NonMaxSuppression' in {node.op_type for node in model.graph.node}


def test_dynamic_batch_equals_single_images(demo_onnx):
    import onnxruntime as ort
    session = ort.InferenceSession(str(demo_onnx[0]), providers=['CPUExecutionProvider'])
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (3, 3, 300, 300)).astype(np.float32)
    batch = session.run(None, {'images': images})
    for i in range(3):
        single = session.run(None, {'images': images[i:i + 1]})
        n = int(single[3][0])
        assert int(batch[3][i]) == n and n > 0
        np.testing.assert_allclose(batch[0][i, :n], single[0][0, :n], atol=1e-3)
        np.testing.assert_array_equal(batch[2][i, :n], single[2][0, :n])
    assert batch[0].shape == (3, 200, 4)  # test_cfg.max_per_img of the demo config


def torch_results(model, synthetic_data, score_thr):
    """mmdet's detections on the val images (test pipeline, boxes in image pixels)."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmdet.registry import DATASETS
    cfg = Config.fromfile(DEMO_CONFIG)
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.data_root = f'{synthetic_data}/'
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = DATASETS.build(dataset_cfg)
    results = []
    with torch.no_grad():
        for index in range(len(dataset)):
            sample = model.test_step(pseudo_collate([dataset[index]]))[0]
            pred = sample.pred_instances
            for box, score, label in zip(pred.bboxes.tolist(), pred.scores.tolist(),
                                         pred.labels.tolist()):
                if score > score_thr:
                    x1, y1, x2, y2 = box
                    results.append(dict(image_id=sample.img_id, category_id=label + 1,
                                        bbox=[x1, y1, x2 - x1, y2 - y1], score=score))
    return results


def bbox_ap(gt_file, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluator = COCOeval(gt, gt.loadRes(results), 'bbox')
        evaluator.params.maxDets = [1, 10, 200]  # all detections of the demo config count
        evaluator.evaluate()
        evaluator.accumulate()
    # AP over IoU 0.50:0.95, all areas, 200 detections (summarize() would use 100)
    precision = evaluator.eval['precision'][:, :, :, 0, -1]
    return float(precision[precision > -1].mean())


def test_onnx_infer_without_torch_reproduces_pytorch(demo_onnx, demo_checkpoint,
                                                     synthetic_data, tmp_path):
    images = sorted(glob.glob(str(synthetic_data / 'val' / '*.jpg')))
    ann_file = synthetic_data / 'annotations' / 'instances_val.json'
    out_dir = tmp_path / 'results'
    result = run_tool('-c', WITHOUT_TORCH, INFER, demo_onnx[0], *images, '--out-dir', out_dir,
                      '--ann-file', ann_file)
    assert result.returncode == 0, result.stderr
    for path in images:
        png = out_dir / (osp.splitext(osp.basename(path))[0] + '.png')
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    onnx_results = json.loads((out_dir / 'detections.json').read_text())
    assert {r['category_id'] for r in onnx_results} <= {1, 2, 3, 4, 5}
    # Pseudo ground truth: PyTorch's confident detections. PyTorch's own AP on it is 1 by
    # construction; onnxruntime's (own resize and box mapping) must be the same.
    reference = torch_results(demo_checkpoint[1], synthetic_data, 0.05)
    gt = json.loads(ann_file.read_text())
    confident = [r for r in reference if r['score'] > 0.3]
    assert len(confident) > 20
    gt['annotations'] = [dict(id=i + 1, image_id=r['image_id'], category_id=r['category_id'],
                              bbox=r['bbox'], area=r['bbox'][2] * r['bbox'][3], iscrowd=0)
                         for i, r in enumerate(confident)]
    gt_file = tmp_path / 'pseudo_gt.json'
    gt_file.write_text(json.dumps(gt))
    ap_torch, ap_onnx = bbox_ap(gt_file, reference), bbox_ap(gt_file, onnx_results)
    assert ap_torch > 0.99
    assert abs(ap_torch - ap_onnx) <= 1e-3
    assert len(onnx_results) == len(reference)


def test_onnx_infer_score_threshold(demo_onnx, synthetic_data, tmp_path):
    image = str(synthetic_data / 'val' / '000000.jpg')

    def detections(*extra):
        out_dir = tmp_path / str(len(extra))
        result = run_tool(INFER, demo_onnx[0], image, '--out-dir', out_dir, *extra)
        assert result.returncode == 0, result.stderr
        return json.loads((out_dir / 'detections.json').read_text())

    default = detections()  # the config's score_thr, 0.05
    assert default and min(d['score'] for d in default) > 0.05
    median = float(np.median([d['score'] for d in default]))
    higher = detections('--score-thr', str(median))
    assert all(d['score'] > median for d in higher)
    assert len(higher) == sum(d['score'] > median for d in default)


def test_non_square_image_mapped_back_as_mmdet_does(demo_onnx, demo_checkpoint, synthetic_data,
                                                   tmp_path):
    import cv2
    from mmengine.config import Config
    from mmengine.dataset import Compose, pseudo_collate
    from iresnet_mmdet.deploy.runtime import OnnxDetector, read_image
    from iresnet_mmdet.deploy.verify import match_detections
    image = cv2.imread(str(synthetic_data / 'val' / '000001.jpg'))
    path = str(tmp_path / 'wide.png')
    wide = cv2.resize(image[40:280], (400, 240)).astype(np.int16)  # not the 300 x 300 input
    # noise: no flat regions, whose exactly tied scores NMS may visit in any order
    wide += np.random.default_rng(0).integers(-2, 3, wide.shape, dtype=np.int16)
    cv2.imwrite(path, np.clip(wide, 0, 255).astype(np.uint8))
    pipeline = [step for step in Config.fromfile(DEMO_CONFIG).test_pipeline
                if step['type'] != 'LoadAnnotations']
    data = Compose(pipeline)(dict(img_path=path, img_id=0))
    with torch.no_grad():
        pred = demo_checkpoint[1].test_step(pseudo_collate([data]))[0].pred_instances
    expected = dict(boxes=pred.bboxes.numpy(), scores=pred.scores.numpy(),
                    labels=pred.labels.numpy())
    actual = OnnxDetector(str(demo_onnx[0])).detect(read_image(path))
    assert actual['boxes'][:, 2].max() > 300  # in the image's own pixels
    stats = match_detections(expected, actual, 0.05, 200)
    assert stats['compared'] > 50 and stats['unmatched'] == 0, stats


RETINANET_CONFIG = """
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['iresnet_mmdet'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='iResNet', depth=18, base_channels=16,
                  out_indices=(0, 1, 2, 3), init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1),
    # the head's prior-probability bias puts untrained scores near 0.01
    test_cfg=dict(score_thr=0.01))
"""


def test_retinanet_export(tmp_path):
    config = tmp_path / 'retinanet_iresnet18_fpn.py'
    config.write_text(RETINANET_CONFIG)
    checkpoint = tmp_path / 'retinanet.pth'
    random_checkpoint(str(config), checkpoint, input_shape=(128, 160))
    out = tmp_path / 'retinanet.onnx'
    status, text = export(config, checkpoint, '--out', out, '--shape', 128, 160, '--verify', 2)
    assert status == 0 and 'result: PASSED' in text, text
    numbers = report_numbers(text)
    assert numbers['compared'] > 20 and numbers['matched'] == numbers['compared']
    assert '(synthetic)' in text  # no COCO data: synthetic inputs, no AP
    import onnx
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props['iresnet_mmdet.keep_ratio']) is True
    assert len(json.loads(props['iresnet_mmdet.classes'])) == 80
    assert json.loads(props['iresnet_mmdet.input_shape']) == [128, 160]


def test_raw_export(demo_checkpoint, tmp_path):
    out = tmp_path / 'raw.onnx'
    status, text = export(DEMO_CONFIG, demo_checkpoint[0], '--out', out, '--raw', '--verify', 1)
    assert status == 0 and 'result: PASSED' in text, text
    assert report_numbers(text)['raw'] <= 1e-4
    import onnx
    names = [o.name for o in onnx.load(str(out)).graph.output]
    assert names == [f'cls_score_{i}' for i in range(6)] + [f'bbox_pred_{i}' for i in range(6)]
    result = run_tool(INFER, out, osp.join(ROOT, 'tests', 'data', 'missing.jpg'),
                      '--out-dir', tmp_path / 'res')
    assert result.returncode == 2 and '--raw' in result.stderr
    assert not (tmp_path / 'res').exists()


RETINANET_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'retinanet', '*.py')))


@pytest.mark.parametrize('config', sorted(glob.glob(osp.join(ROOT, 'configs', 'ssd300', '*.py')))
                         + [DEMO_CONFIG] + RETINANET_CONFIGS, ids=osp.basename)
def test_every_shipped_single_stage_config_is_exportable(config):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    from iresnet_mmdet.deploy.export import (build_graph, check_supported_config,
                                             check_supported_model, default_input_shape)
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    check_supported_config(cfg.model)
    model = MODELS.build(cfg.model).eval()
    check_supported_model(model)
    if 'retinanet' in osp.basename(config):
        # mmdet's RetinaNet test pipeline: (1333, 800) keep-ratio, padded to a multiple of 32
        assert default_input_shape(cfg, model) == (800, 1344)
        graph = build_graph(model, (128, 160))  # 9 anchors per cell, strides 8 to 128
        expected = 9 * sum(-(-128 // s) * -(-160 // s) for s in (8, 16, 32, 64, 128))
        assert sum(len(getattr(graph, f'priors_{i}')) for i in range(graph.num_levels)) == expected
        assert (graph.score_thr, graph.iou_threshold, graph.max_per_img) == (0.05, 0.5, 100)
        return
    graph = build_graph(model, (300, 300))
    assert sum(len(getattr(graph, f'priors_{i}')) for i in range(graph.num_levels)) == 8732
    assert (graph.score_thr, graph.iou_threshold, graph.max_per_img) == (0.05, 0.45, 200)


def test_shipped_retinanet_export(tmp_path):
    """configs/retinanet/retinanet_iresgroup50_fpn_1x_coco.py as shipped, random weights, 128x160."""
    config = osp.join(ROOT, 'configs', 'retinanet', 'retinanet_iresgroup50_fpn_1x_coco.py')
    no_download = tmp_path / 'retinanet_random_init.py'  # the weights only: no ImageNet init
    no_download.write_text(f"_base_ = '{config}'\nmodel = dict(backbone=dict(init_cfg=None))\n")
    checkpoint = tmp_path / 'retinanet.pth'
    random_checkpoint(str(no_download), checkpoint, input_shape=(128, 160))
    out = tmp_path / 'retinanet.onnx'
    status, text = export(config, checkpoint, '--out', out, '--shape', 128, 160, '--verify', 1,
                          '--fuse-conv-bn')
    assert status == 0 and 'result: PASSED' in text, text
    # untrained, every score sits near the head's prior 0.01, so few detections are compared
    # (test_retinanet_export checks the post-processing); the raw outputs carry the check
    numbers = report_numbers(text)
    assert numbers['raw'] <= 1e-4 and numbers['matched'] == numbers['compared'], text


def bad_input_cases(tmp_path, checkpoint):
    """(arguments, expected message part) of bad inputs to export_onnx.py."""
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    key = next(k for k in state if k.endswith('conv_cls.0.weight') or 'cls_convs.0' in k)
    state[key] = state[key][:-1]
    mismatched = tmp_path / 'mismatched.pth'
    torch.save({'state_dict': state}, mismatched)
    two_stage = tmp_path / 'faster_rcnn.py'
    two_stage.write_text("_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'\n")
    anchor_free = tmp_path / 'fcos.py'
    anchor_free.write_text("_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'\n"
                           'model = dict(backbone=dict(init_cfg=None))\n')
    return [
        ((DEMO_CONFIG, tmp_path / 'none.pth'), 'does not exist'),
        ((DEMO_CONFIG, mismatched), 'does not fit the model'),
        ((two_stage, checkpoint), 'two-stage detector'),
        ((anchor_free, checkpoint), "head type 'FCOSHead' is not supported"),
    ]


def test_export_bad_input(demo_checkpoint, tmp_path, capsys):
    from iresnet_mmdet.errors import run_main
    tool = load_tool(EXPORT)
    out = tmp_path / 'out' / 'model.onnx'
    cases = bad_input_cases(tmp_path, demo_checkpoint[0])
    # the first case as a user meets it: a process, its exit status and stderr
    (args, message), others = cases[0], cases[1:]
    result = run_tool(EXPORT, *args, '--out', out)
    assert result.returncode == 2 and result.stderr.startswith('error: '), result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    for args, message in others:  # the same path (run_main), in this process
        with pytest.raises(SystemExit) as exit_info:
            run_main(lambda: tool.main([str(a) for a in args] + ['--out', str(out)]))
        assert exit_info.value.code == 2
        stderr = capsys.readouterr().err.strip().splitlines()
        assert stderr[-1].startswith('error: ') and message in stderr[-1], stderr[-1]
    assert not (tmp_path / 'out').exists()


def test_export_checks_its_options_and_output_before_the_work(demo_checkpoint, tmp_path):
    from iresnet_mmdet.errors import ToolError
    tool = load_tool(EXPORT)
    (tmp_path / 'a_file').write_text('')
    for extra, message in ((['--threads', '0'], '--threads 0 is not a thread count'),
                           (['--out', str(tmp_path / 'a_file' / 'm.onnx')], 'is a file, so no'),
                           (['--out', str(tmp_path)], 'is a directory, not a file')):
        with pytest.raises(ToolError, match=re.escape(message)):
            tool.main([DEMO_CONFIG, str(demo_checkpoint[0]), '--out',
                       str(tmp_path / 'model.onnx'), *extra])
    assert not (tmp_path / 'model.onnx').exists()


def test_onnx_infer_bad_input(demo_onnx, synthetic_data, tmp_path):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node('Identity', ['images'], ['out'])], 'other',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, [1, 3, 8, 8])])
    foreign = tmp_path / 'other.onnx'
    onnx.save(helper.make_model(graph), str(foreign))
    broken = tmp_path / 'broken.jpg'
    broken.write_text('not an image')
    good = str(synthetic_data / 'val' / '000000.jpg')
    cases = [((foreign, good), 'not written by tools/deployment/export_onnx.py'),
             ((demo_onnx[0], good, broken), 'cannot read image'),
             ((tmp_path / 'none.onnx', good), 'does not exist'),
             ((broken, good), 'not a loadable ONNX model')]
    for args, message in cases:
        out_dir = tmp_path / 'results'
        result = run_tool(INFER, *args, '--out-dir', out_dir)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith('error: ') and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out_dir.exists()


def test_verifier_fails_when_the_onnx_detections_differ(demo_checkpoint, synthetic_data,
                                                        tmp_path, monkeypatch):
    # The exported detections graph gets other class scores (one class's logit raised) than the
    # checkpoint's model, its raw head export does not: only the detections differ.
    from iresnet_mmdet.deploy import export as export_module
    build_graph = export_module.build_graph

    def changed_graph(model, input_shape, raw=False):
        if raw:
            return build_graph(model, input_shape, raw)
        changed = copy.deepcopy(model)
        classes = changed.bbox_head.cls_out_channels
        with torch.no_grad():
            for branch in changed.bbox_head.cls_convs:
                branch[-1].bias.view(-1, classes)[:, 0] += 2.0
        return build_graph(changed, input_shape, raw)

    monkeypatch.setattr(export_module, 'build_graph', changed_graph)
    status, text = export(DEMO_CONFIG, demo_checkpoint[0], '--out', tmp_path / 'changed.onnx',
                          '--verify', 2, '--cfg-options',
                          f'test_dataloader.dataset.data_root={synthetic_data}/')
    numbers = report_numbers(text)
    assert status == 1 and 'result: FAILED' in text, text
    assert numbers['raw'] <= 1e-4  # the head outputs of the raw export are the model's
    assert numbers['compared'] > 0 and numbers['matched'] < numbers['compared'], text


def test_onnx_infer_keeps_inputs_with_the_same_name_apart(demo_onnx, synthetic_data, tmp_path):
    import shutil
    first, second = tmp_path / 'a' / 'x.jpg', tmp_path / 'b' / 'x.jpg'
    for source, target in ((synthetic_data / 'val' / '000000.jpg', first),
                           (synthetic_data / 'val' / '000001.jpg', second)):
        target.parent.mkdir()
        shutil.copy(source, target)
    out_dir = tmp_path / 'results'
    result = run_tool(INFER, demo_onnx[0], first, second, '--out-dir', out_dir)
    assert result.returncode == 0, result.stderr
    assert (out_dir / 'a' / 'x.png').is_file() and (out_dir / 'b' / 'x.png').is_file()
    detections = json.loads((out_dir / 'detections.json').read_text())
    by_image = {key: [d for d in detections if d['image_id'] == key] for key in ('a/x', 'b/x')}
    assert len(detections) == len(by_image['a/x']) + len(by_image['b/x'])
    for key, source in (('a/x', '000000.jpg'), ('b/x', '000001.jpg')):  # as each one alone
        alone = tmp_path / key
        check = run_tool(INFER, demo_onnx[0], synthetic_data / 'val' / source, '--out-dir', alone)
        assert check.returncode == 0, check.stderr
        expected = json.loads((alone / 'detections.json').read_text())
        assert [d['bbox'] for d in by_image[key]] == [d['bbox'] for d in expected]
        assert by_image[key]


def test_onnx_infer_options_checked_before_any_output(demo_onnx, synthetic_data, tmp_path):
    tool = load_tool(INFER)
    runtime = tool.load_runtime()
    good = str(synthetic_data / 'val' / '000000.jpg')
    (tmp_path / 'a_file').write_text('')
    cases = [(['--score-thr', '5'], '--score-thr 5 is not a score'),
             (['--score-thr', 'nan'], '--score-thr nan is not a score'),
             (['--threads', '-3'], '--threads -3 is not a thread count'),
             (['--out-dir', str(tmp_path / 'a_file' / 'out')], 'is a file, so no folder'),
             (['--out-dir', str(tmp_path / 'a_file')], 'is a file, not a directory')]
    for extra, message in cases:
        argv = [str(demo_onnx[0]), good, '--out-dir', str(tmp_path / 'results'), *extra]
        with pytest.raises(runtime.DeployError, match=re.escape(message)):
            tool.main(argv, runtime=runtime)
    with pytest.raises(runtime.DeployError, match='given twice'):
        tool.main([str(demo_onnx[0]), good, good, '--out-dir', str(tmp_path / 'r')],
                  runtime=runtime)
    assert not (tmp_path / 'results').exists() and not (tmp_path / 'r').exists()


@pytest.mark.skipif(not osp.isfile(osp.join(TRAINED_DIR, 'last_checkpoint'))
                    or not osp.isdir(osp.join(ROOT, 'data', 'synthetic_coco')),
                    reason='needs the trained demo (make demo)')
def test_trained_demo_checkpoint(tmp_path):
    with open(osp.join(TRAINED_DIR, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    status, text = export(DEMO_CONFIG, checkpoint, '--out', tmp_path / 'demo.onnx',
                          '--verify', 100)
    assert status == 0 and 'result: PASSED' in text, text
    numbers = report_numbers(text)
    assert numbers['ap_torch'] > 0.3  # the trained demo reaches about 0.48
    assert abs(numbers['ap_torch'] - numbers['ap_onnx']) <= 1e-3


def test_fuse_conv_bn_export(demo_checkpoint, synthetic_data, tmp_path):
    """The demo's iResNet blocks are fuse-safe: folded, verified against the unfolded model."""
    import onnx
    out = tmp_path / 'fused.onnx'
    result = run_tool(EXPORT, DEMO_CONFIG, demo_checkpoint[0], '--out', out, '--fuse-conv-bn',
                      '--verify', 2, '--cfg-options',
                      f'test_dataloader.dataset.data_root={synthetic_data}/')
    assert result.returncode == 0 and 'result: PASSED' in result.stdout, result.stderr[-2000:]
    # left: the BNs that follow no conv (iResNet's stage-end and final norms, the bn0s), counted
    # in the PyTorch model, not by the exporter
    unfused = sum(isinstance(m, torch.nn.BatchNorm2d) for m in demo_checkpoint[1].modules())
    ops = [node.op_type for node in onnx.load(str(out)).graph.node]
    assert 0 < ops.count('BatchNormalization') < unfused


class ConvThenBNAfterAddition(torch.nn.Module):
    """``bn(conv(x) + x)``: mmcv folds ``bn`` into ``conv`` (registered just before it), which
    changes the output."""

    def __init__(self, channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.bn(self.conv(x) + x)


def register_unfusable_backbone():
    """``UnfusableiResNet``: the demo's iResNet with a :class:`ConvThenBNAfterAddition` on its
    output (registered in mmdet's registry; the export runs in this process)."""
    from mmdet.registry import MODELS
    from iresnet_mmdet.models.backbones import iResNet

    class UnfusableiResNet(iResNet):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.tail = ConvThenBNAfterAddition(4 * kwargs['base_channels'])

        def forward(self, x):
            outs = list(super().forward(x))
            outs[-1] = self.tail(outs[-1])
            return tuple(outs)

    MODELS.register_module('UnfusableiResNet', module=UnfusableiResNet, force=True)


def test_fuse_conv_bn_never_exports_a_changed_model(tmp_path, capsys):
    from iresnet_mmdet.errors import run_main
    register_unfusable_backbone()
    config = tmp_path / 'ssd300_unfusable.py'
    config.write_text(f"_base_ = '{DEMO_CONFIG}'\nmodel = dict(backbone=dict(type='UnfusableiResNet'))\n")
    checkpoint = tmp_path / 'unfusable.pth'
    random_checkpoint(str(config), checkpoint)
    out = tmp_path / 'fused.onnx'
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: load_tool(EXPORT).main(
            [str(config), str(checkpoint), '--out', str(out), '--fuse-conv-bn']))
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('error: --fuse-conv-bn changes the outputs'), last
    assert not out.exists()
    status, text = export(config, checkpoint, '--out', out, '--verify', 1)  # unfused: fine
    assert status == 0 and 'result: PASSED' in text, text
