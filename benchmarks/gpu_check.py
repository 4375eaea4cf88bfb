"""The GPU check: CUDA against a float64 CPU reference, SSD300 training, detector speed at batch 32.

One script, a few minutes on one GPU, four parts:

1. **Backbones**: every preset (mmdet's ``ResNet`` as the baseline) with random weights and random
   BN statistics, on the same random input: eval-mode outputs, train-mode outputs, and the
   gradients of a fixed random projection of the train-mode outputs (``sum <out, R>``; the plain
   sum's gradient cancels through train-mode BN) with respect to the input and to every
   parameter. Each tensor of CUDA float32 (TF32 off) and of CPU float32 is compared with a CPU
   float64 run by its relative L2 error ``|x - ref| / |ref|``. CPU float32's error is the noise
   floor: a tensor passes when CUDA's error is at most ``max(--factor * cpu, --floor)`` (10 and
   1e-5). Printed per preset: the worst tensor of each kind, CUDA's error beside CPU's.
2. **Batched head on CUDA**: SSD300-ResNet-50 with ``BatchedSSDHead`` and with mmdet's per-image
   ``SSDHead`` code (``FixedSSDHead``), same weights, one training batch in float32: losses and
   every gradient compared (the noise floor: two runs of mmdet's head), and the detections of
   the same batch.
3. **AMP training**: SSD300-iResNet-50 (``configs/ssd300``, the batched head, channels-last as the
   configs' ``ChannelsLastHook`` does on CUDA), ``--iters`` (50) iterations through mmengine's
   ``AmpOptimWrapper`` (float16 autocast, dynamic loss scale) with the configs' SGD (lr 2e-3,
   momentum 0.9, weight decay 5e-4) on synthetic batches (random images, three random boxes
   each, a new batch every iteration). Passes when every loss and parameter is finite.
4. **Speed**: ``benchmarks/detector_speed.py`` on ``--rows`` (default ResNet-50 and iResNet-50;
   ``all``: the paper's eight SSD300 rows), ``--mode both --steps full,network --device cuda
   --amp --batch 32 --variants channels-last --heads fixed,batched``: img/s of the full step and
   of the network alone, train and infer, with mmdet's head code (before) and the batched head
   (after).

Usage::

    .venv/bin/python benchmarks/gpu_check.py [--out DIR] [--batch 32] [--iters 50]
        [--rows r50,iresnet50|all] [--variants channels-last] [--backbones NAME,...]
    bash .gpu/run.sh python3 benchmarks/gpu_check.py --out OUTDIR    # on a bare GPU machine

It prints one line per check and the speed tables, and writes ``DIR/gpu_check.json`` (all checks
and figures) and ``DIR/detector_speed.json`` (the benchmark's records); ``DIR`` defaults to
``work_dirs/gpu_check``. Exit status 0 when every check passes, 1 when one fails; without CUDA one
``error:`` line, exit status 2 and nothing written. ``--dry-run-cpu`` runs the same flow on the
CPU (CPU float32 standing in for CUDA, no AMP), to try the script without a GPU.
"""
import argparse
import copy
import json
import math
import os
import os.path as osp
import platform
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import warnings  # noqa: E402

# mmengine 0.10.7 imports pkg_resources, which setuptools >= 80 flags as deprecated
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

import torch  # noqa: E402

import iresnet_mmdet  # noqa: E402,F401  (registers the backbones)
from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402
from iresnet_mmdet.models import zoo  # noqa: E402

SHAPE_2D, SHAPE_CIFAR, SHAPE_3D = (2, 3, 160, 160), (2, 3, 32, 32), (2, 3, 8, 64, 64)
#: (name, backbone config, input shape): every preset at the depths of its block kinds.
BACKBONES = [
    ('ResNet-50', dict(type='ResNet', depth=50), SHAPE_2D),
    *[(f'{kind}-{depth}', dict(type=kind, depth=depth), SHAPE_2D)
      for kind in ('PreActResNet', 'ResStage', 'iResNet') for depth in (18, 50)],
    *[(f'{kind}-50', dict(type=kind, depth=50), SHAPE_2D)
      for kind in ('ResGroup', 'ResGroupFix', 'iResGroup', 'iResGroupFix')],
    *[(f'{kind}-164', dict(type=kind, depth=164), SHAPE_CIFAR)
      for kind in ('ResNetCifar', 'iResNetCifar')],
    *[(f'{kind}-50', dict(type=kind, depth=50), SHAPE_3D) for kind in ('ResNet3D', 'iResNet3D')],
]
ROWS = tuple(osp.basename(c).split('_')[1] for c in zoo.ssd300_paper_configs())
AMP_CONFIG = 'configs/ssd300/ssd300_iresnet50_8xb32-65e_coco.py'
HEAD_CONFIG = 'configs/ssd300/ssd300_r50_8xb32-65e_coco.py'
KINDS = ('eval', 'train', 'input_grad', 'param_grad')


# ---- part 1: gradients against a float64 reference -------------------------------------------


def randomize_norms(model, seed=0):
    """Random affine parameters and running statistics for every BN (see detector_speed)."""
    from detector_speed import randomize_norms as randomize
    randomize(model, seed)


def projections(model, x, seed=0):
    """Fixed random tensors ``R`` (float64, one per output) for the loss ``sum <out, R>``."""
    model = copy.deepcopy(model)
    model.eval()  # (mmdet's ResNet.train returns None: no chaining)
    with torch.no_grad():
        outputs = model(x)
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=gen, dtype=torch.float64) / math.sqrt(o.numel())
            for o in outputs]


def gradient_run(model, x, projection, device, dtype):
    """Eval outputs, train outputs and the gradients of ``sum <out, R>`` of a copy of ``model``
    in ``dtype`` on ``device``, all as float64 CPU tensors."""
    model = copy.deepcopy(model).to(device, dtype)
    x = x.detach().to(device, dtype, copy=True)
    model.eval()
    with torch.no_grad():
        eval_out = [t.clone() for t in model(x)]
    x.requires_grad_(True)
    model.train()
    train_out = model(x)
    loss = sum((o * r.to(device, dtype)).sum() for o, r in zip(train_out, projection))
    loss.backward()
    cpu = lambda t: t.detach().to('cpu', torch.float64)  # noqa: E731
    return dict(eval=[cpu(t) for t in eval_out], train=[cpu(t) for t in train_out],
                input_grad=[cpu(x.grad)],
                param_grad={n: cpu(p.grad) for n, p in model.named_parameters()
                            if p.grad is not None})


def relative_l2(value, reference) -> float:
    """``|value - reference| / |reference|`` (``|value|`` for a zero reference)."""
    scale = reference.norm().item()
    diff = (value - reference).norm().item()
    return diff / scale if scale > 0 else diff


def run_errors(run, reference):
    """Per kind (:data:`KINDS`), the relative L2 error of every tensor: ``{kind: {name: err}}``."""
    errors = {}
    for kind in KINDS:
        values, refs = run[kind], reference[kind]
        names = list(refs) if isinstance(refs, dict) else range(len(refs))
        errors[kind] = {str(n): relative_l2(values[n], refs[n]) for n in names}
    return errors


def verdict(cpu_errors, device_errors, factor=10., floor=1e-5):
    """Whether every device tensor is within ``max(factor * cpu error, floor)``; per kind, the
    tensor with the largest device error (name, device error, CPU error, passed)."""
    worst, passed = {}, True
    for kind in KINDS:
        ok = {name: err <= max(factor * cpu_errors[kind][name], floor)
              for name, err in device_errors[kind].items()}
        passed &= all(ok.values())
        failing = [n for n, good in ok.items() if not good]
        name = max(failing or device_errors[kind], key=device_errors[kind].get)
        worst[kind] = dict(name=name, device=device_errors[kind][name],
                           cpu=cpu_errors[kind][name], passed=not failing)
    return passed, worst


def check_backbone(name, model, x, device, factor, floor, device_model=None):
    """Part 1 for one model: float64 CPU reference, CPU float32 and ``device`` float32 runs.

    ``device_model`` (default: ``model``) is the one run on ``device`` (a test breaks it)."""
    projection = projections(model, x)
    reference = gradient_run(model, x, projection, 'cpu', torch.float64)
    cpu = run_errors(gradient_run(model, x, projection, 'cpu', torch.float32), reference)
    on_device = run_errors(gradient_run(device_model or model, x, projection, device,
                                        torch.float32), reference)
    passed, worst = verdict(cpu, on_device, factor, floor)
    return dict(name=name, shape=list(x.shape), passed=passed, worst=worst)


def print_backbone(record, device):
    cells = '  '.join(f'{kind} {w["device"]:.1e} (cpu {w["cpu"]:.1e})'
                      for kind, w in record['worst'].items())
    print(f'{"ok  " if record["passed"] else "FAIL"} {device} vs float64 {record["name"]:18s} '
          f'{cells}', flush=True)
    if not record['passed']:
        print('     failing: ' + ', '.join(f'{k}: {w["name"]}' for k, w in record['worst'].items()
                                         if not w['passed']), flush=True)


def check_backbones(args, device):
    """Part 1: one record per preset (TF32 off on CUDA)."""
    from mmdet.registry import MODELS
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    results = []
    for name, cfg, shape in BACKBONES:
        if args.backbones and name not in args.backbones:
            continue
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        randomize_norms(model)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        record = check_backbone(name, model, x, device, args.factor, args.floor)
        print_backbone(record, device)
        results.append(record)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return results


# ---- part 2: the batched head against mmdet's on the device ----------------------------------


def head_run(model, batch):
    """Losses and every parameter gradient of one training step (float32)."""
    model.zero_grad(set_to_none=True)
    losses = model.loss(*batch)
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.detach().double().cpu() for n, p in model.named_parameters()
             if p.grad is not None}
    return {k: log_vars[k].item() for k in ('loss_cls', 'loss_bbox')}, grads


def check_head(config, device, batch_size, factor, floor):
    """Part 2: BatchedSSDHead against FixedSSDHead (mmdet's code) on an SSD300 config."""
    from detector_speed import build_model, num_classes, short_name, synthetic_batch
    models = {}
    for head in ('fixed', 'batched'):
        torch.manual_seed(0)
        models[head] = build_model(config, head).to(device).train()
        randomize_norms(models[head])
    batch = synthetic_batch(batch_size, 300, num_classes(models['fixed']), False, device, seed=1)
    detections = compare_detections(copy.deepcopy(models), batch)  # before BN statistics move
    torch.backends.cudnn.deterministic = True
    fixed, fixed_again = head_run(models['fixed'], batch), head_run(models['fixed'], batch)
    batched = head_run(models['batched'], batch)
    torch.backends.cudnn.deterministic = False
    loss_err = max(abs(batched[0][k] - fixed[0][k]) / abs(fixed[0][k]) for k in fixed[0])
    noise = {n: relative_l2(fixed_again[1][n], g) for n, g in fixed[1].items()}
    errors = {n: relative_l2(batched[1][n], g) for n, g in fixed[1].items()}
    grads_ok = all(e <= max(factor * noise[n], floor) for n, e in errors.items())
    worst = max(errors, key=errors.get)
    passed = loss_err <= 1e-5 and grads_ok and detections['passed']
    print(f'{"ok  " if passed else "FAIL"} {device}: BatchedSSDHead vs mmdet\'s SSDHead code, '
          f'{short_name(config)}, batch {batch_size}: losses {loss_err:.1e}, worst gradient '
          f'{worst} {errors[worst]:.1e} (noise {noise[worst]:.1e}), detections '
          f'{detections["matched"]}/{detections["total"]} equal', flush=True)
    return dict(config=config, batch=batch_size, losses=fixed[0], loss_error=loss_err,
                worst_gradient=dict(name=worst, error=errors[worst], noise=noise[worst]),
                detections=detections, passed=passed)


def compare_detections(models, batch, score_thr=0.02):
    """Eval-mode detections of both heads (a low score threshold, so that random weights give
    some): per image the same count and, sorted by score, the same labels and scores."""
    results = {}
    for head, model in models.items():
        model.eval()
        model.bbox_head.test_cfg.score_thr = score_thr
        with torch.no_grad():
            results[head] = [s.pred_instances for s in model.predict(*copy.deepcopy(batch))]
    matched = total = 0
    for got, expected in zip(results['batched'], results['fixed']):
        total += len(expected)
        if len(got) == len(expected):
            g, e = got.scores.sort(descending=True), expected.scores.sort(descending=True)
            same = ((g.values - e.values).abs() <= 1e-5) & (
                got.labels[g.indices] == expected.labels[e.indices])
            matched += int(same.sum())
    return dict(matched=matched, total=total, passed=matched == total)


# ---- part 3: AMP training ----------------------------------------------------------------------


def check_amp_training(config, iters, batch, device, amp):
    """Part 3: AMP training of an SSD300 config, channels-last; losses and parameters finite."""
    from detector_speed import build_model, num_classes, short_name, synthetic_batch
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    from iresnet_mmdet.engine.hooks import to_channels_last
    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    to_channels_last(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=2e-3, momentum=0.9, weight_decay=5e-4)
    wrapper = (AmpOptimWrapper(optimizer=optimizer, loss_scale='dynamic') if amp else
               OptimWrapper(optimizer=optimizer))
    classes = num_classes(model)
    losses = []
    start = time.perf_counter()
    for it in range(iters):
        inputs, samples = synthetic_batch(batch, 300, classes, False, device, seed=it)
        with wrapper.optim_context(model):
            loss, _ = model.parse_losses(model.loss(inputs, samples))
        wrapper.update_params(loss)
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    finite_params = all(torch.isfinite(p).all().item() for p in model.parameters())
    passed = finite_params and all(math.isfinite(v) for v in losses)
    scale = wrapper.loss_scaler.get_scale() if amp else None
    print(f'{"ok  " if passed else "FAIL"} {"AMP " if amp else ""}training {short_name(config)}: '
          f'{iters} iterations at batch {batch} in {seconds:.1f} s, loss {losses[0]:.3f} -> '
          f'{losses[-1]:.3f}, loss scale {scale}, parameters finite: {finite_params}', flush=True)
    return dict(config=config, iters=iters, batch=batch, seconds=seconds, losses=losses,
                loss_scale=scale, finite_params=finite_params, passed=passed)


# ---- part 4: speed ------------------------------------------------------------------------------


def row_configs(rows):
    """Config files of ``--rows``: paper row names (:data:`ROWS`), ``all``, or config paths."""
    names = list(ROWS) if rows == 'all' else [r.strip() for r in rows.split(',') if r.strip()]
    configs = []
    for name in names:
        path = name if name.endswith('.py') else osp.join(
            ROOT, 'configs', 'ssd300', f'ssd300_{name}_8xb32-65e_coco.py')
        if not osp.isfile(path):
            raise ToolError(f"--rows: no config for {name!r}; use names of {', '.join(ROWS)}, "
                            "'all' or config paths")
        configs.append(path)
    return configs


def run_speed(args, device, json_path):
    """Part 4: the detector benchmark; its records."""
    import detector_speed
    options = ['--mode', 'both', '--steps', 'full,network', '--variants', args.variants,
               '--device', device, '--batch', str(args.batch), '--heads', 'fixed,batched',
               '--warmup', str(args.warmup), '--repeats', str(args.repeats), '--json', json_path]
    detector_speed.main([*row_configs(args.rows), *options, *(['--amp'] if device == 'cuda'
                                                               else [])])
    with open(json_path) as f:
        return json.load(f)


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=osp.join('work_dirs', 'gpu_check'),
                        help='directory for gpu_check.json and detector_speed.json')
    parser.add_argument('--batch', type=int, default=32, help='batch of parts 2-4')
    parser.add_argument('--iters', type=int, default=50, help='AMP training iterations')
    parser.add_argument('--rows', default='r50,iresnet50',
                        help=f"SSD300 rows of the speed part: names of {', '.join(ROWS)}, 'all', "
                        'or config paths')
    parser.add_argument('--variants', default='channels-last',
                        help='detector_speed variants of the speed part (e.g. eager,channels-last)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed rounds of the speed part')
    parser.add_argument('--repeats', type=int, default=10, help='timed rounds of the speed part')
    parser.add_argument('--backbones', default='',
                        help='comma-separated preset names of part 1 (default: all)')
    parser.add_argument('--factor', type=float, default=10.,
                        help='a device error passes up to factor x CPU float32\'s error ...')
    parser.add_argument('--floor', type=float, default=1e-5, help='... or up to this')
    parser.add_argument('--model', default=None,
                        help='SSD300 config of parts 2 and 3 (default: ResNet-50 for part 2, '
                        'iResNet-50 for part 3)')
    parser.add_argument('--dry-run-cpu', action='store_true',
                        help='run the flow on the CPU (CPU float32 as the device, no AMP)')
    args = parser.parse_args(argv)
    args.backbones = [b.strip() for b in args.backbones.split(',') if b.strip()]
    return args


def check_args(args):
    if not args.dry_run_cpu and not torch.cuda.is_available():
        raise ToolError(f'no CUDA device: PyTorch {torch.__version__} sees none '
                        f'(CUDA build: {torch.version.cuda or "no"}); run this on a machine '
                        'with an NVIDIA GPU and a CUDA build of PyTorch (or --dry-run-cpu)')
    if args.batch < 2 or args.iters < 1:
        raise ToolError('--batch must be >= 2 (SSD training) and --iters >= 1')
    unknown = [b for b in args.backbones if b not in [name for name, _, _ in BACKBONES]]
    if unknown:
        raise ToolError(f"--backbones: unknown preset {', '.join(unknown)}; use names of "
                        f"{', '.join(name for name, _, _ in BACKBONES)}")
    row_configs(args.rows)
    if args.model and not osp.isfile(args.model):
        raise ToolError(f'--model {args.model}: no such config file')


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    device = 'cpu' if args.dry_run_cpu else 'cuda'
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    name = torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU (dry run)'
    print(f'GPU check on {name}, torch {torch.__version__} (CUDA {torch.version.cuda}), '
          f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads',
          flush=True)
    backbones = check_backbones(args, device)
    head = check_head(args.model or osp.join(ROOT, HEAD_CONFIG), device, args.batch,
                      args.factor, args.floor)
    amp = check_amp_training(args.model or osp.join(ROOT, AMP_CONFIG), args.iters, args.batch,
                             device, amp=device == 'cuda')
    speed = run_speed(args, device, osp.join(args.out, 'detector_speed.json'))
    passed = all(r['passed'] for r in backbones) and head['passed'] and amp['passed']
    summary = dict(device=name, torch=torch.__version__, cuda=torch.version.cuda, passed=passed,
                   seconds=time.perf_counter() - start, backbones=backbones, batched_head=head,
                   amp_training=amp,
                   speed=[{k: r[k] for k in ('name', 'mode', 'step', 'head', 'variant', 'batch',
                                             'amp', 'img_per_s', 'gflops')} for r in speed])
    with open(osp.join(args.out, 'gpu_check.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'\nGPU check {"PASSED" if passed else "FAILED"} in {summary["seconds"]:.0f} s; '
          f'written to {osp.join(args.out, "gpu_check.json")}')
    return 0 if passed else 1


if __name__ == '__main__':
    run_main(main)
