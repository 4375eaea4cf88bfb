"""The GPU check: CUDA against CPU for every backbone, AMP training, detector speed at batch 32.

One script, a few minutes on one GPU, three parts:

1. **Backbones**: every preset (mmdet's ``ResNet`` as the baseline) with random weights and random
   BN statistics, on the same random input on CPU and on CUDA in float32 (TF32 off): eval-mode
   outputs, train-mode outputs and the input gradient of the train-mode output's sum. Passes when
   every ``max |cuda - cpu| / max |cpu|`` is at most ``--tolerance`` (1e-4).
2. **AMP training**: SSD300-iResNet-50 (``configs/ssd300``) from random weights, ``--iters``
   (50) iterations through mmengine's ``AmpOptimWrapper`` (float16 autocast, dynamic loss scale)
   with the configs' SGD (lr 2e-3, momentum 0.9, weight decay 5e-4) on synthetic batches (random
   images, three random boxes each, a new batch every iteration). Passes when every loss and
   every parameter at the end is finite.
3. **Speed**: ``benchmarks/detector_speed.py`` on the paper's eight SSD300 rows, ``--mode both
   --variants eager --device cuda --amp --batch 32`` (img/s for inference and training).

Usage::

    .venv/bin/python benchmarks/gpu_check.py [--out DIR] [--batch 32] [--iters 50]

It prints one line per check and the speed tables, and writes ``DIR/gpu_check.json`` (all checks
and figures) and ``DIR/detector_speed.json`` (the benchmark's records); ``DIR`` defaults to
``work_dirs/gpu_check``. Exit status 0 when every check passes, 1 when one fails; without CUDA one
``error:`` line, exit status 2 and nothing written.
"""
import argparse
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
from iresnet_mmdet.engine import cli  # noqa: E402

#: (name, backbone config, input shape): every preset at the depths of its block kinds.
BACKBONES = [
    ('ResNet-50 (mmdet)', dict(type='ResNet', depth=50), (2, 3, 224, 224)),
    *[(f'{kind}-{depth}', dict(type=kind, depth=depth), (2, 3, 224, 224))
      for kind in ('PreActResNet', 'ResStage', 'iResNet') for depth in (18, 50)],
    *[(f'{kind}-50', dict(type=kind, depth=50), (2, 3, 224, 224))
      for kind in ('ResGroup', 'ResGroupFix', 'iResGroup', 'iResGroupFix')],
    *[(f'{kind}-164', dict(type=kind, depth=164), (2, 3, 32, 32))
      for kind in ('ResNetCifar', 'iResNetCifar')],
    *[(f'{kind}-50', dict(type=kind, depth=50), (1, 3, 8, 112, 112))
      for kind in ('ResNet3D', 'iResNet3D')],
]
AMP_CONFIG = 'configs/ssd300/ssd300_iresnet50_8xb32-65e_coco.py'


def randomize_norms(model, seed=0):
    """Random affine parameters and running statistics for every BN (see detector_speed)."""
    from detector_speed import randomize_norms as randomize
    randomize(model, seed)


def relative(a, b):
    """``max |a - b| / max |b|`` of two tensors (``a`` moved to ``b``'s device)."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def backbone_outputs(model, x):
    """Eval-mode outputs, train-mode outputs and the input gradient of their sum."""
    model.eval()
    with torch.no_grad():
        eval_out = [t.clone() for t in model(x)]
    model.train()
    x = x.clone().requires_grad_(True)
    train_out = model(x)
    sum(t.float().sum() for t in train_out).backward()
    return eval_out, [t.detach() for t in train_out], x.grad


def check_backbones(tolerance):
    """Part 1: one record per preset with the three relative differences."""
    import copy
    from mmdet.registry import MODELS
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    results = []
    for name, cfg, shape in BACKBONES:
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        randomize_norms(model)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        cpu = backbone_outputs(copy.deepcopy(model), x)
        cuda = backbone_outputs(model.cuda(), x.cuda())
        diffs = dict(
            eval=max(relative(g, r) for g, r in zip(cuda[0], cpu[0])),
            train=max(relative(g, r) for g, r in zip(cuda[1], cpu[1])),
            input_grad=relative(cuda[2], cpu[2]))
        passed = all(d <= tolerance for d in diffs.values())
        results.append(dict(name=name, shape=list(shape), passed=passed, **diffs))
        print(f'{"ok  " if passed else "FAIL"} CUDA vs CPU {name:20s} eval {diffs["eval"]:.1e}  '
              f'train {diffs["train"]:.1e}  input grad {diffs["input_grad"]:.1e}', flush=True)
        del model
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    return results


def check_amp_training(iters, batch):
    """Part 2: AMP training of SSD300-iResNet-50; losses and final parameters finite."""
    from detector_speed import build_model, num_classes, synthetic_batch
    from mmengine.optim import AmpOptimWrapper
    torch.manual_seed(0)
    model = build_model(osp.join(ROOT, AMP_CONFIG)).cuda().train()
    wrapper = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=2e-3, momentum=0.9, weight_decay=5e-4),
        loss_scale='dynamic')
    classes = num_classes(model)
    losses = []
    start = time.perf_counter()
    for it in range(iters):
        inputs, samples = synthetic_batch(batch, 300, classes, False, 'cuda', seed=it)
        with wrapper.optim_context(model):
            loss, _ = model.parse_losses(model.loss(inputs, samples))
        wrapper.update_params(loss)
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    finite_params = all(torch.isfinite(p).all().item() for p in model.parameters())
    passed = finite_params and all(math.isfinite(v) for v in losses)
    print(f'{"ok  " if passed else "FAIL"} AMP training {AMP_CONFIG}: {iters} iterations at '
          f'batch {batch} in {seconds:.1f} s, loss {losses[0]:.3f} -> {losses[-1]:.3f}, '
          f'loss scale {wrapper.loss_scaler.get_scale():g}, parameters finite: {finite_params}',
          flush=True)
    return dict(config=AMP_CONFIG, iters=iters, batch=batch, seconds=seconds, losses=losses,
                loss_scale=wrapper.loss_scaler.get_scale(), finite_params=finite_params,
                passed=passed)


def run_speed(batch, json_path):
    """Part 3: the detector benchmark on the eight paper rows; its records."""
    import detector_speed
    detector_speed.main([*(osp.join(ROOT, p) for p in detector_speed.PAPER_ROWS), '--mode',
                         'both', '--variants', 'eager', '--device', 'cuda', '--amp',
                         '--batch', str(batch), '--json', json_path])
    with open(json_path) as f:
        return json.load(f)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=osp.join('work_dirs', 'gpu_check'),
                        help='directory for gpu_check.json and detector_speed.json')
    parser.add_argument('--batch', type=int, default=32, help='batch of training and benchmark')
    parser.add_argument('--iters', type=int, default=50, help='AMP training iterations')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest relative CUDA-vs-CPU difference of the backbones')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not torch.cuda.is_available():
        raise cli.ToolError(f'no CUDA device: PyTorch {torch.__version__} sees none '
                            f'(CUDA build: {torch.version.cuda or "no"}); run this on a machine '
                            'with an NVIDIA GPU and a CUDA build of PyTorch')
    if args.batch < 2 or args.iters < 1:
        raise cli.ToolError('--batch must be >= 2 (SSD training) and --iters >= 1')
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    device = torch.cuda.get_device_name(0)
    print(f'GPU check on {device}, torch {torch.__version__} (CUDA {torch.version.cuda}), '
          f'{platform.processor() or platform.machine()}', flush=True)
    backbones = check_backbones(args.tolerance)
    amp = check_amp_training(args.iters, args.batch)
    speed = run_speed(args.batch, osp.join(args.out, 'detector_speed.json'))
    passed = all(r['passed'] for r in backbones) and amp['passed']
    summary = dict(device=device, torch=torch.__version__, cuda=torch.version.cuda,
                   passed=passed, seconds=time.perf_counter() - start, backbones=backbones,
                   amp_training=amp,
                   speed=[{k: r[k] for k in ('name', 'mode', 'variant', 'batch', 'amp',
                                             'img_per_s', 'gflops')} for r in speed])
    with open(osp.join(args.out, 'gpu_check.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'\nGPU check {"PASSED" if passed else "FAILED"} in {summary["seconds"]:.0f} s; '
          f'written to {osp.join(args.out, "gpu_check.json")}')
    return 0 if passed else 1


if __name__ == '__main__':
    cli.run_main(main)
