"""Export a single-stage detector (SSD, RetinaNet) to ONNX, with its post-processing.

Examples::

    .venv/bin/python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx --verify 20
    .venv/bin/python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out raw.onnx --raw
    .venv/bin/python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx \\
        --dynamic-batch --fuse-conv-bn --shape 300 300

The graph takes ``images (B, 3, H, W)``: float32, BGR, 0-255, already resized as the config's test
pipeline resizes (the data preprocessor's channel flip and mean/std are inside the graph). It
returns ``boxes (B, max_per_img, 4)`` (x1, y1, x2, y2 in network-input pixels), ``scores``,
``labels`` and ``num_detections`` after box decoding, the score threshold and per-class NMS of the
config's ``test_cfg``; with ``--raw``, the head's outputs per level. See docs/deploy.md.
Bad input ends with one ``error:`` line and exit status 2, without writing ``--out``.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import time
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repository
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from iresnet_mmdet.atomic import check_output  # noqa: E402
from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Export a detector to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='the ONNX file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="network input size (default: the test pipeline's resize)")
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='a variable batch size (default: batch 1)')
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='fold each BN into the conv before it (mmcv.cnn.fuse_conv_bn; '
                        'refused where that changes the outputs)')
    parser.add_argument('--raw', action='store_true',
                        help='export the head outputs only (no decoding, no NMS)')
    parser.add_argument('--verify', type=int, default=0, metavar='N',
                        help='compare onnxruntime with PyTorch on N images (exit status 1 if the '
                        'outputs differ)')
    parser.add_argument('--threads', type=int, help='onnxruntime threads for --verify')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, "key=value" pairs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from iresnet_mmdet.deploy import export, verify
    if args.shape and min(args.shape) < 32:
        raise ToolError(f'--shape {args.shape[0]} {args.shape[1]} is too small; give the '
                        'network input height and width in pixels (at least 32)')
    if args.verify < 0:
        raise ToolError('--verify N needs N >= 0 images')
    if args.threads is not None and args.threads < 1:
        raise ToolError(f'--threads {args.threads} is not a thread count; give 1 or more')
    check_output(args.out, '--out', ToolError)
    start = time.perf_counter()
    model, cfg, ckpt = export.load_detector(args.config, args.checkpoint, args.cfg_options)
    input_shape = tuple(args.shape) if args.shape else export.default_input_shape(cfg, model)
    reference = model  # verification compares with the model as trained, before any fusion
    if args.fuse_conv_bn:
        model = export.fuse_conv_bn(copy.deepcopy(model) if args.verify else model, input_shape)
    graph = export.build_graph(model, input_shape, raw=args.raw)
    props = export.metadata(cfg, ckpt, model, input_shape, args.raw, args.config)
    try:
        export.export_onnx(graph, args.out, input_shape, props, dynamic_batch=args.dynamic_batch)
    except OSError as exc:  # checked writable before; e.g. the disk filled up meanwhile
        raise ToolError(f'cannot write --out {args.out} ({exc.strerror or exc}); nothing was '
                        'written, run the export again with another --out') from None
    seconds = time.perf_counter() - start
    batch = 'B' if args.dynamic_batch else '1'
    outputs = ', '.join(export.output_names(graph))
    print(f'exported {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB) in {seconds:.1f} s: '
          f'images ({batch}, 3, {input_shape[0]}, {input_shape[1]}) float32 BGR 0-255 -> '
          f'{outputs}')
    if not args.verify:
        return 0
    if args.raw:
        error = verify.raw_error(reference, args.out,
                                 verify.synthetic_inputs(args.verify, input_shape), args.threads)
        report = dict(images=args.verify, source='synthetic', raw_rel_err=error,
                      passed=error <= verify.RAW_RTOL)
    else:
        report = verify.Verifier(reference, cfg, args.out, args.threads, model).run(args.verify)
    print('\n'.join(verify.format_report(report)))
    return 0 if report['passed'] else 1


if __name__ == '__main__':
    run_main(main)
