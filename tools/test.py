"""Test (evaluate) a checkpoint: mmdet's ``tools/test.py`` command line, CPU or GPUs.

Examples::

    .venv/bin/python tools/test.py CONFIG work_dirs/run1/epoch_6.pth
    .venv/bin/python tools/test.py CONFIG CKPT --out results.pkl --metrics-out metrics.json
    .venv/bin/python tools/test.py CONFIG CKPT --fuse-conv-bn --compile  # faster inference
    bash tools/dist_test.sh CONFIG CKPT 2  # 2 processes/GPUs

The work dir defaults to ``work_dirs/<config name>/test/`` (``<config work_dir>/test/`` when the
config sets one), so testing never overwrites the training run's files. Outputs are checked to be
writable before the work and written atomically after it; the metrics are printed first, so a
write that still fails loses nothing (the message says where the file went instead).
Besides mmdet's options, ``--metrics-out FILE`` writes the final metrics as JSON,
``--fuse-conv-bn`` folds each BN into the conv before it once the checkpoint is loaded (refused
when that would change the outputs: ``iresnet_mmdet.engine.fuse``) and ``--compile`` compiles the
backbone, neck and head forward (``iresnet_mmdet.engine.compile``; eager, with one warning, where
no C++ compiler works). The checkpoint
must fit the config's model (mmengine would only warn and evaluate random weights); bad input ends
with one ``error:`` line and exit status 2.
"""
import argparse
import json
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # repository root
# mmengine 0.10.7 imports pkg_resources, which setuptools >= 80 flags as deprecated on every run
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

# importing the package registers its modules in mmdet's registries
from iresnet_mmdet.atomic import check_output, write_output  # noqa: E402
from iresnet_mmdet.checkpoint import check_fits, load_checkpoint  # noqa: E402
from iresnet_mmdet.config import load_config  # noqa: E402
from iresnet_mmdet.engine.data_checks import check_data  # noqa: E402
from iresnet_mmdet.engine.model_checks import check_model_types  # noqa: E402
from iresnet_mmdet.errors import ToolError, launcher_rank, run_main  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Test (and eval) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory for logs and the config dump; default: '
                        'work_dirs/<config name>/test (the training work dir is left alone)')
    parser.add_argument('--out', type=str,
                        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--metrics-out', type=str, help='write the final metrics to this JSON file')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir',
                        help='directory where painted images will be saved; relative paths are '
                        'inside the run\'s timestamped log directory')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, "key=value" pairs, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--check', action='store_true',
                        help='only check the config, data (every image file), options, outputs '
                        'and that the checkpoint loads, as the run would, then exit: '
                        'tools/dist_test.sh does this before starting processes')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='fold each BN into the conv before it (checked against the unfused '
                        'outputs); faster inference')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone, neck and head forward (CompileHook)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (flip)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must end with .pkl or .pickle')
    return args


def apply_args(cfg, args):
    """Apply the command line to the config, as mmdet's tools/test.py does."""
    from iresnet_mmdet.engine.compile import add_compile_hook
    from mmdet.engine.hooks.utils import trigger_visualization_hook
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    else:  # beside the training run's files, not over them
        train_dir = cfg.get('work_dir') or osp.join(
            './work_dirs', osp.splitext(osp.basename(args.config))[0])
        cfg.work_dir = osp.join(train_dir, 'test')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        apply_tta(cfg)
    if args.fuse_conv_bn:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='FuseConvBNHook')]
    add_compile_hook(cfg, args.compile)
    return cfg


def apply_tta(cfg):
    """Wrap the model for test-time augmentation (flip), with mmdet's defaults if not configured."""
    import copy
    import warnings
    from mmengine import ConfigDict
    if 'tta_model' not in cfg:
        warnings.warn('no tta_model in the config: using DetTTAModel with NMS 0.5')
        cfg.tta_model = dict(type='DetTTAModel',
                             tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                          max_per_img=100))
    test_data_cfg = cfg.test_dataloader.dataset
    while 'dataset' in test_data_cfg:
        test_data_cfg = test_data_cfg['dataset']
    if 'tta_pipeline' not in cfg:
        warnings.warn('no tta_pipeline in the config: using the test pipeline with flips')
        cfg.tta_pipeline = copy.deepcopy(test_data_cfg.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.),
                         dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor', 'flip', 'flip_direction'))]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_data_cfg.pipeline = cfg.tta_pipeline


def check_outputs(cfg, args):
    """Every file and folder the run will write, before it starts."""
    where = '--work-dir' if args.work_dir else f"the work dir ('{cfg.work_dir}')"
    check_output(cfg.work_dir, where, ToolError, directory=True)
    check_output(args.out, '--out', ToolError)
    check_output(args.metrics_out, '--metrics-out', ToolError)
    if args.show_dir and osp.isabs(args.show_dir):  # a relative one lies in the work dir
        check_output(args.show_dir, '--show-dir', ToolError, directory=True)


def write_metrics(metrics, path):
    """Write the metrics as JSON (numbers as floats), atomically."""
    clean = {k: (float(v) if isinstance(v, (int, float)) or hasattr(v, 'item') else v)
             for k, v in metrics.items()}

    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(clean, f, indent=2)

    write_output(path, write, ToolError)


def keep_predictions(runner, path):
    """Collect the predictions (as mmdet's DumpDetResults would) for :func:`write_predictions`."""
    from mmdet.evaluation import DumpDetResults

    class KeptDetResults(DumpDetResults):

        def compute_metrics(self, results):
            self.kept = results  # written by the tool after the metrics, atomically
            return {}

    kept = KeptDetResults(out_file_path=path)
    runner.test_evaluator.metrics.append(kept)
    return kept


def write_predictions(kept, path):
    from mmengine.fileio import dump
    write_output(path, lambda tmp: dump(kept.kept, tmp, file_format='pkl'), ToolError)


def main(argv=None):
    from iresnet_mmdet.engine.dist import setup_cpu_distributed
    from iresnet_mmdet.engine.fuse import FuseConvBNError
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmdet.registry import RUNNERS
    from mmengine.runner import Runner

    args = parse_args(argv)
    setup_cache_size_limit_of_dynamo()
    cfg = load_config(args.config, args.cfg_options)
    cfg = apply_args(cfg, args)
    check_model_types(cfg)
    check_outputs(cfg, args)
    check_data(cfg, ['test'], all_images=args.check)
    ckpt = load_checkpoint(args.checkpoint)  # exists and loads safely, before any work
    if args.check:
        print(f'check passed: {args.config}')
        return 0
    try:
        setup_cpu_distributed(cfg, args.launcher)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_fits(runner.model, args.checkpoint, ckpt)
    del ckpt
    kept = keep_predictions(runner, args.out) if args.out is not None else None
    try:
        metrics = runner.test()
    except FuseConvBNError as exc:
        raise ToolError(str(exc)) from None
    if launcher_rank() != 0:
        return 0
    print('\nTest metrics:', flush=True)  # first: a failed write below loses nothing
    for key, value in metrics.items():
        print(f'  {key}: {value}', flush=True)
    outputs = []
    if args.metrics_out:
        outputs.append(('metrics', args.metrics_out,
                        lambda: write_metrics(metrics, args.metrics_out)))
    if kept is not None:
        outputs.append(('predictions', args.out, lambda: write_predictions(kept, args.out)))
    failed = []
    for what, path, write in outputs:  # each one tried, whatever happened to the others
        try:
            write()
            print(f'{what} written to {path}')
        except ToolError as exc:
            failed.append(str(exc))
    if failed:
        raise ToolError('; '.join(failed))
    return 0


if __name__ == '__main__':
    run_main(main)
