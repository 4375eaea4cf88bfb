"""Build a detector from a config and checkpoint and export it to ONNX with its metadata."""
import contextlib
import io
import json
import logging
import os.path as osp
import warnings

import torch

from ..atomic import write_atomic
from ..checkpoint import check_fits, load_checkpoint
from ..config import load_config
from ..engine.model_checks import check_model_types
from ..errors import ToolError


def require_exporter():
    """Check that this environment can export, before importing what needs it.

    Raises:
        ToolError: Without torch's ``torch.export``-based ONNX exporter with custom translations
            and ``torch.library.custom_op`` (torch >= 2.6), or without the ``[deploy]`` packages.
    """
    import importlib.util
    import inspect
    if not (hasattr(torch.library, 'custom_op')
            and 'custom_translation_table' in inspect.signature(torch.onnx.export).parameters):
        raise ToolError(f'ONNX export needs torch 2.6 or newer (its torch.export-based exporter); '
                        f'this is torch {torch.__version__}. onnx_infer.py runs exported models '
                        'with any torch, or none')
    missing = [name for name in ('onnx', 'onnxscript', 'onnxruntime')
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ToolError(f'ONNX export needs {", ".join(missing)}: pip install '
                        '"iresnet-mmdet[deploy]" (in a checkout: pip install -r '
                        'requirements/deploy.txt)')


require_exporter()
from .graph import DetectorGraph, Preprocess, RawDetectorGraph  # noqa: E402
from .nms import ONNX_TRANSLATIONS  # noqa: E402
from .runtime import METADATA_PREFIX, OUTPUTS_DETECTIONS, OUTPUTS_RAW  # noqa: E402

DETECTION_OUTPUTS = ('boxes', 'scores', 'labels', 'num_detections')


def load_detector(config, checkpoint, cfg_options=None):
    """The detector of a config with a checkpoint's weights, in eval mode.

    Args:
        config (str): Config file.
        checkpoint (str): Checkpoint file; it must hold every weight of the model.
        cfg_options (dict, optional): Overrides of the config.

    Returns:
        tuple: ``(model, cfg, checkpoint dict)``.

    Raises:
        ToolError: For a bad config, an unreadable or mismatched checkpoint, or an unsupported
            model.
    """
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    from mmdet.registry import MODELS
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    check_model_types(cfg)
    check_supported_config(cfg.model)
    model = MODELS.build(cfg.model)
    check_supported_model(model)
    ckpt = load_checkpoint(checkpoint)
    check_fits(model, checkpoint, ckpt)
    _load_checkpoint_to_model(model, ckpt, logger='silent')
    return model.eval(), cfg, ckpt


def check_supported_config(model_cfg):
    """Reject the detectors the exporter cannot handle before building them.

    Args:
        model_cfg (dict): The ``model`` section of a config.

    Raises:
        ToolError: Naming what is not supported.
    """
    if 'rpn_head' in model_cfg or 'roi_head' in model_cfg:
        raise ToolError(
            f"model type '{model_cfg.get('type')}' is a two-stage detector (RPN + RoI head); the "
            'ONNX export supports single-stage detectors with an anchor head (SSD, RetinaNet) only')


def check_supported_model(model):
    """Check that the exported graph reproduces the model's own post-processing.

    Args:
        model (torch.nn.Module): The built detector.

    Raises:
        ToolError: Naming what is not supported.
    """
    from mmdet.models.dense_heads import AnchorHead
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.detectors import SingleStageDetector
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    kind = type(model).__name__
    if not isinstance(model, SingleStageDetector):
        raise ToolError(f"model type '{kind}' is not supported by the ONNX export: it supports "
                        'single-stage detectors with an anchor head (SSD, RetinaNet)')
    head = model.bbox_head
    head_kind = type(head).__name__
    # a head may compute mmdet's post-processing its own way if it says so (BatchedSSDHead)
    own_post_processing = getattr(head, 'standard_post_processing', False) or (
        type(head).predict_by_feat is BaseDenseHead.predict_by_feat and
        type(head)._predict_by_feat_single is BaseDenseHead._predict_by_feat_single)
    if not isinstance(head, AnchorHead) or not own_post_processing:
        raise ToolError(f"head type '{head_kind}' is not supported by the ONNX export: it "
                        "supports anchor heads with mmdet's standard post-processing (SSDHead, "
                        'RetinaHead)')
    if not isinstance(head.bbox_coder, DeltaXYWHBBoxCoder):
        raise ToolError(f"box coder '{type(head.bbox_coder).__name__}' of {head_kind} is not "
                        'supported by the ONNX export (only DeltaXYWHBBoxCoder)')
    nms = (head.test_cfg or {}).get('nms') or {}
    if nms.get('type', 'nms') != 'nms' or nms.get('class_agnostic', False):
        raise ToolError(f'test_cfg.nms {dict(nms)} is not supported by the ONNX export (only '
                        "per-class type='nms')")
    if 'max_per_img' not in head.test_cfg:
        raise ToolError('test_cfg.max_per_img is missing: the ONNX export needs a fixed '
                        'number of detections per image')


def fuse_conv_bn(model, input_shape):
    """Fold every BN into the conv before it, in place, after checking that this is exact.

    Args:
        model (torch.nn.Module): The detector.
        input_shape (tuple[int, int]): ``(H, W)`` of the check image.

    Raises:
        ToolError: If folding changes the outputs (a block whose BN does not follow its conv).
    """
    from ..engine.fuse import FuseConvBNError, fuse_and_verify
    try:
        fuse_and_verify(model, tuple(input_shape))
    except FuseConvBNError as exc:
        raise ToolError(str(exc)) from None
    return model


def test_resize(cfg):
    """The ``Resize`` step of the config's test pipeline: ``(scale (w, h), keep_ratio)``."""
    pipeline = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.get('pipeline', [])
    for step in pipeline:
        if step.get('type') == 'Resize':
            scale = step.get('scale')
            if isinstance(scale, int):
                scale = (scale, scale)
            return tuple(scale), bool(step.get('keep_ratio', False))
    raise ToolError('the test pipeline of the config has no Resize step; give the network input '
                    'size with --shape H W')


def default_input_shape(cfg, model):
    """The network input ``(H, W)`` of the test pipeline, padded as the data preprocessor pads."""
    (width, height), _ = test_resize(cfg)
    divisor = Preprocess.of(model).pad_size_divisor
    return tuple(-(-size // divisor) * divisor for size in (height, width))


def class_names(cfg, ckpt, num_classes):
    """The detector's class names: the dataset metainfo, the checkpoint's meta or the dataset's."""
    from mmdet.registry import DATASETS
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    names = (dataset.get('metainfo') or {}).get('classes')
    if not names:
        names = ((ckpt.get('meta') or {}).get('dataset_meta') or {}).get('classes')
    if not names:
        dataset_cls = DATASETS.get(dataset.get('type', '')) if dataset.get('type') else None
        names = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    names = list(names or [])
    if len(names) != num_classes:
        names = [f'class_{i}' for i in range(num_classes)]
    return names


def category_ids(cfg, names):
    """COCO category ids of the classes: from the test annotation file, else 1, 2, ..."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    ann_file = osp.join(dataset.get('data_root') or '', dataset.get('ann_file') or '')
    ids = {}
    if osp.isfile(ann_file):
        with open(ann_file) as f:
            ids = {c['name']: c['id'] for c in json.load(f).get('categories', [])}
    if all(name in ids for name in names):
        return [ids[name] for name in names]
    return list(range(1, len(names) + 1))


def build_graph(model, input_shape, raw=False):
    """The module to export: :class:`DetectorGraph`, or :class:`RawDetectorGraph` for ``raw``."""
    preprocess = Preprocess.of(model)
    if raw:
        return RawDetectorGraph(model, preprocess).eval()
    return DetectorGraph(model, preprocess, input_shape).eval()


def output_names(graph):
    if isinstance(graph, DetectorGraph):
        return list(DETECTION_OUTPUTS)
    levels = len(graph.detector.bbox_head.prior_generator.strides)
    return ([f'cls_score_{i}' for i in range(levels)]
            + [f'bbox_pred_{i}' for i in range(levels)])


def metadata(cfg, ckpt, model, input_shape, raw, config_path):
    """The ``metadata_props`` that ``onnx_infer`` needs, all strings."""
    head = model.bbox_head
    preprocess = Preprocess.of(model)
    _, keep_ratio = test_resize(cfg)
    mean = preprocess.mean.view(-1).tolist()
    if preprocess.bgr_to_rgb:
        mean = mean[::-1]  # the graph's input order (BGR): mmdet pads after normalising, with 0
    props = {
        'outputs': OUTPUTS_RAW if raw else OUTPUTS_DETECTIONS,
        'classes': json.dumps(class_names(cfg, ckpt, head.num_classes)),
        'score_thr': repr(float(head.test_cfg.get('score_thr', 0))),
        'max_per_img': str(int(head.test_cfg['max_per_img'])),
        'input_shape': json.dumps(list(input_shape)),
        'channel_order': 'BGR',
        'keep_ratio': json.dumps(keep_ratio),
        'pad_value': json.dumps([round(v, 6) for v in mean]),
        'config': osp.basename(config_path),
        'category_ids': json.dumps(category_ids(cfg, class_names(cfg, ckpt, head.num_classes))),
    }
    return {METADATA_PREFIX + key: value for key, value in props.items()}


def export_onnx(graph, out, input_shape, props, dynamic_batch=False):
    """Export ``graph`` to ``out`` (written to a temporary file, then renamed).

    Args:
        graph (torch.nn.Module): :class:`DetectorGraph` or :class:`RawDetectorGraph`.
        out (str): The ONNX file.
        input_shape (tuple[int, int]): Network input ``(H, W)``.
        props (dict): ``metadata_props`` to store.
        dynamic_batch (bool): A variable batch size instead of batch 1.
    """
    import onnx
    batch = 2 if dynamic_batch else 1  # an example of 1 would specialise the batch dimension
    example = (torch.zeros(batch, 3, *input_shape), )
    dynamic_shapes = ({0: torch.export.Dim('batch', min=1, max=1024)}, ) if dynamic_batch else None
    # the exporter logs a warning per missing torchvision op and prints its progress
    logging.getLogger('torch.onnx').setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')
        program = torch.export.export(graph, example, dynamic_shapes=dynamic_shapes, strict=False)
        onnx_program = torch.onnx.export(
            program, example, dynamo=True, custom_translation_table=ONNX_TRANSLATIONS,
            input_names=['images'], output_names=output_names(graph), verbose=False)
    proto = onnx_program.model_proto
    onnx.helper.set_model_props(proto, props)
    write_atomic(out, lambda tmp: onnx.save(proto, tmp))
