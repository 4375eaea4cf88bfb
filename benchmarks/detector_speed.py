"""Speed of whole detectors, inference and training, eager or compiled or fused; no data needed.

Every (config, variant, mode) gets its own copy of the config's model (same random weights), a
synthetic batch of ``--batch`` images of ``--size`` x ``--size`` with three random boxes each, and
is timed round-robin in one process, so that load changes on the machine hit all of them alike:
``--warmup`` rounds (the compilation happens there), then ``--repeats`` timed rounds, medians.

* ``infer``: ``model.predict`` in eval mode without gradients, post-processing (decoding, NMS)
  included. Random weights give few boxes above the score threshold, so NMS costs less than with
  a trained model.
* ``train``: ``model.loss`` (label assignment and losses included), backward and an SGD step
  (momentum 0.9, weight decay 5e-4: the same optimizer for every config).

Steps (``--steps``), for single-stage detectors both by default:

* ``full``: the step as above;
* ``network``: the network alone, backbone + neck + head forward (``infer``), plus a dummy loss
  (the mean of every head output), backward and the same SGD step (``train``): what the step
  would cost without label assignment, losses and post-processing. The ``full / network`` table
  prints the full step's img/s as a fraction of the network-only step's: the overhead, as a
  number.

``--heads`` times SSD detectors with another head, same weights: ``fixed`` (mmdet's per-image
``SSDHead`` code, as ``FixedSSDHead``), ``batched`` (``BatchedSSDHead``), ``config`` (as the config
says; mmdet's ``SSDHead`` becomes ``FixedSSDHead``, whose predictions do not crash); e.g.
``--heads fixed,batched`` for a before/after comparison in one run.

Variants, joined by ``+`` for combinations (e.g. ``compile+channels-last``):

* ``eager``: the model as built;
* ``compile``: backbone, neck and head forward through ``torch.compile``
  (``iresnet_mmdet.engine.compile``);
* ``fuse-conv-bn``: every BN folded into the conv before it (inference only, checked against the
  unfused model: ``iresnet_mmdet.engine.fuse``);
* ``channels-last``: weights and input in ``torch.channels_last`` memory format;
* ``onnxruntime``: the detector exported as ``tools/deployment/export_onnx.py`` exports it
  (pre-processing, decoding and NMS in the graph; ``iresnet_mmdet.deploy``) and run by
  onnxruntime's CPU provider with ``--threads`` intra-op threads (inference only, single-stage
  detectors; combinable with ``fuse-conv-bn`` only). Its input is the same batch in the graph's
  convention (BGR, 0-255), its ``rel_diff`` that of a ``--raw`` export.

Every variant's outputs are compared with the eager model's (raw head outputs in eval mode for
``infer``, the first training loss for ``train``): ``rel_diff`` = max |variant - eager| / max
|eager|. Printed per mode: img/s, time ratio to the first config of the same variant, paper GFLOPs
(``iresnet_mmdet.analysis.complexity``, convention ``paper``) and their ratio, time-per-FLOP ratio
and the speed-up over the eager variant of the same config.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/detector_speed.py [CONFIG ...]
        [--mode infer|train|both] [--variants eager,compile] [--batch 8] [--size 300]
        [--threads N] [--device cpu|cuda] [--amp] [--warmup 2] [--repeats 5] [--json FILE]
        [--steps full,network] [--heads config|fixed|batched,...] [--profile N]
        [--malloc auto|tcmalloc|glibc-tuned|system]

``CONFIG`` may be a file or an ``mmdet::`` config (e.g. ``mmdet::ssd/ssd300_coco.py``); the default
list is the paper's eight SSD300 rows, mmdet's SSD300-VGG16 and the FPN detector configs of
``configs/faster_rcnn``, ``configs/retinanet`` and ``configs/mask_rcnn``. The allocator option is
the one of ``benchmarks/backbone_speed.py`` (``auto``: TCMalloc if installed). ``--profile N``
profiles one more step of every entry afterwards and prints its N most expensive ops (forward and
backward, grouped by input shapes: where the time goes). Bad input gives one ``error:`` line, exit
status 2 and no JSON file.
"""
import argparse
import copy
import glob
import importlib.util
import json
import os
import os.path as osp
import re
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import warnings  # noqa: E402

# mmengine 0.10.7 imports pkg_resources, which setuptools >= 80 flags as deprecated
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

import torch  # noqa: E402
import torch._dynamo  # noqa: E402  (its exceptions)

from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402
from iresnet_mmdet.models import zoo  # noqa: E402

PAPER_ROWS = zoo.ssd300_paper_configs()
PEER = 'mmdet::ssd/ssd300_coco.py'
FPN_DIRS = ('configs/faster_rcnn', 'configs/retinanet', 'configs/mask_rcnn')
VARIANT_PARTS = ('eager', 'compile', 'fuse-conv-bn', 'channels-last', 'onnxruntime')
INFER_ONLY = ('fuse-conv-bn', 'onnxruntime')
MODES = ('infer', 'train')
STEPS = ('full', 'network')
#: ``--heads`` values and the head type each gives an SSD detector (``config``: as configured)
HEADS = {'config': None, 'fixed': 'FixedSSDHead', 'batched': 'BatchedSSDHead'}
SSD_HEAD_TYPES = ('SSDHead', 'mmdet.SSDHead', 'FixedSSDHead', 'BatchedSSDHead')
BOXES_PER_IMAGE = 3


def default_configs() -> List[str]:
    """The paper's SSD300 rows (paper order), mmdet's SSD300-VGG16, then FPN configs if present."""
    fpn = [path for folder in FPN_DIRS
           for path in sorted(glob.glob(osp.join(ROOT, folder, '*.py')))]
    return [osp.join(ROOT, p) for p in PAPER_ROWS] + [PEER] + fpn


def resolve_config(name: str) -> str:
    """The file of a config path or ``package::path`` name."""
    if '::' in name:
        package, path = name.split('::', 1)
        try:
            module = __import__(package)
        except ImportError:
            raise ToolError(f"unknown config '{name}': package {package!r} is not "
                            'installed') from None
        name = osp.join(osp.dirname(module.__file__), '.mim', 'configs', path)
        if not osp.isfile(name):
            raise ToolError(f"unknown config '{name}': no such config in {package}")
    elif not osp.isfile(name):
        raise ToolError(f"unknown config '{name}': no such file; pass a config path or "
                        "a name such as 'mmdet::ssd/ssd300_coco.py'")
    return name


def short_name(config: str) -> str:
    """``configs/ssd300/ssd300_iresnet50_8xb32-65e_coco.py`` -> ``ssd300_iresnet50``."""
    stem = osp.splitext(osp.basename(config))[0]
    return re.sub(r'_\d+xb\d+.*$', '', stem)


def parse_variants(text: str) -> List[str]:
    """The list of ``--variants``, each a ``+``-joined set of :data:`VARIANT_PARTS`."""
    variants = [v.strip() for v in text.split(',') if v.strip()]
    for variant in variants:
        unknown = [part for part in variant.split('+') if part not in VARIANT_PARTS]
        if unknown or not variant:
            raise ToolError(f"unknown variant '{variant}' in --variants: use "
                            f"{', '.join(VARIANT_PARTS)} or combinations joined by '+' "
                            '(e.g. compile+channels-last)')
        if 'onnxruntime' in variant and variant_parts(variant) - {'onnxruntime', 'fuse-conv-bn'}:
            raise ToolError(f"variant '{variant}': onnxruntime runs the exported graph and "
                            "combines with fuse-conv-bn only (e.g. onnxruntime+fuse-conv-bn)")
    if not variants:
        raise ToolError('--variants is empty: give e.g. eager,compile')
    return variants


def parse_choices(text: str, choices, option: str) -> List[str]:
    """The comma-separated values of ``option``, each one of ``choices``."""
    values = [v.strip() for v in text.split(',') if v.strip()]
    unknown = [v for v in values if v not in choices]
    if unknown or not values:
        raise ToolError(f"{option} {text!r}: use one or more of {', '.join(choices)}, "
                        'comma-separated')
    return values


def variant_parts(variant: str) -> set:
    return set(variant.split('+')) - {'eager'}


def load_model_config(config: str, head: str = 'config'):
    """The config with the SSD head of ``--heads`` (:data:`HEADS`); mmdet's ``SSDHead`` becomes
    the plugin's ``FixedSSDHead`` (same layers and losses; mmdet 3.3's crashes in ``predict``)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    bbox_head = cfg.model.get('bbox_head')
    is_ssd = isinstance(bbox_head, dict) and bbox_head.get('type') in SSD_HEAD_TYPES
    if head != 'config' and not is_ssd:
        raise ToolError(f'--heads {head}: {short_name(config)} has no SSD head; time it with '
                        '--heads config')
    if is_ssd and bbox_head.type in ('SSDHead', 'mmdet.SSDHead'):
        bbox_head.type = 'FixedSSDHead'
    if HEADS[head]:
        bbox_head.type = HEADS[head]
    return cfg


def build_model(config: str, head: str = 'config') -> torch.nn.Module:
    """The config's detector with PyTorch's default initialisation (no checkpoint is read)."""
    from iresnet_mmdet.analysis.complexity import build_from_config
    return build_from_config(load_model_config(config, head))


def network_forward(model, inputs):
    """Backbone, neck and head of a single-stage detector: the head's output tensors."""
    outputs = model.bbox_head(model.extract_feat(inputs))
    return [t for level in outputs for t in (level if isinstance(level, (list, tuple)) else
                                             [level])]


def has_network_step(model) -> bool:
    """Whether the network-only step is defined: single-stage detectors (a dense head)."""
    return hasattr(model, 'bbox_head') and not hasattr(model, 'roi_head')


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN random affine parameters and running statistics.

    A freshly built BN is nearly the identity in eval mode, which would hide a wrong folding in
    the ``fuse-conv-bn`` check and make the eval-mode outputs unlike a trained model's.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.affine:
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)


def num_classes(model) -> int:
    for path in ('bbox_head', 'roi_head.bbox_head'):
        try:
            return model.get_submodule(path).num_classes
        except AttributeError:
            continue
    return 80


def has_masks(model) -> bool:
    return getattr(getattr(model, 'roi_head', None), 'with_mask', False)


def synthetic_batch(batch: int, size: int, classes: int, masks: bool, device: str, seed: int = 0):
    """``(inputs, data_samples)`` as a data preprocessor would give them: normalised random images
    and ``BOXES_PER_IMAGE`` random boxes (and box-shaped masks) per image."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, size, size, generator=gen)
    samples = []
    for i in range(batch):
        shape = (size, size)
        sample = DetDataSample(metainfo=dict(
            img_id=i, img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
            scale_factor=(1.0, 1.0)))
        corner = torch.rand(BOXES_PER_IMAGE, 2, generator=gen) * size * 0.6
        extent = torch.rand(BOXES_PER_IMAGE, 2, generator=gen) * size * 0.3 + size * 0.1
        boxes = torch.cat([corner, corner + extent], dim=1)
        instances = InstanceData(
            bboxes=boxes, labels=torch.randint(classes, (BOXES_PER_IMAGE, ), generator=gen))
        if masks:
            bitmaps = torch.zeros(BOXES_PER_IMAGE, size, size, dtype=torch.uint8)
            for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                bitmaps[k, y1:y2, x1:x2] = 1
            instances.masks = BitmapMasks(bitmaps.numpy(), size, size)
        sample.gt_instances = instances.to(device)
        samples.append(sample)
    return inputs.to(device), samples


class Entry:
    """One timed (config, variant, mode): its model, optimizer, input and timings.

    Args:
        config (str): Config file.
        variant (str): ``+``-joined variant parts.
        mode (str): ``'infer'`` or ``'train'``.
        model (nn.Module): Its own copy of the config's model, on the device.
        batch (tuple): ``(inputs, data_samples)``.
        amp (bool): Autocast to float16 (CUDA).
        step (str): ``'full'`` or ``'network'`` (:data:`STEPS`).
        head (str): The ``--heads`` value it was built with.
    """

    def __init__(self, config, variant, mode, model, batch, amp, step='full', head='config'):
        self.config, self.variant, self.mode = config, variant, mode
        self.model, self.amp, self.step_kind, self.head = model, amp, step, head
        parts = variant_parts(variant)
        inputs, self.samples = batch
        if 'channels-last' in parts:
            model.to(memory_format=torch.channels_last)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        self.inputs = inputs
        self.device = inputs.device.type
        if mode == 'train':
            model.train()
            self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9,
                                             weight_decay=5e-4)
            self.scaler = torch.amp.GradScaler('cuda', enabled=amp)
        else:
            model.eval()
        if 'fuse-conv-bn' in parts:
            from iresnet_mmdet.engine.fuse import fuse_and_verify
            fuse_and_verify(model, image_size=tuple(inputs.shape[-2:]))
        if 'compile' in parts:
            from iresnet_mmdet.engine.compile import compile_parts
            compile_parts(model)
        self.seconds: List[float] = []
        self.first_loss = None

    def autocast(self):
        return torch.autocast(self.device, dtype=torch.float16, enabled=self.amp)

    def step(self) -> None:
        """One inference or training step on the batch (full or network only)."""
        network = self.step_kind == 'network'
        if self.mode == 'infer':
            with torch.no_grad(), self.autocast():
                if network:
                    network_forward(self.model, self.inputs)
                else:
                    self.model.predict(self.inputs, self.samples)
            return
        with self.autocast():
            if network:  # a dummy loss that reaches every output
                loss = sum(t.float().mean() for t in network_forward(self.model, self.inputs))
            else:
                loss, _ = self.model.parse_losses(self.model.loss(self.inputs, self.samples))
        if self.first_loss is None:
            self.first_loss = loss.detach().float().cpu()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def timed_step(self) -> None:
        sync = torch.cuda.synchronize if self.device == 'cuda' else (lambda: None)
        sync()
        start = time.perf_counter()
        self.step()
        sync()
        self.seconds.append(time.perf_counter() - start)

    def raw_outputs(self):
        """Raw head outputs in eval mode (infer entries only)."""
        from iresnet_mmdet.engine.fuse import raw_forward
        with self.autocast():
            return raw_forward(self.model, self.inputs)


class OnnxEntry(Entry):
    """An ``onnxruntime`` entry: the model exported to ONNX (in ``workdir``) and its session.

    Args:
        config, variant, model, batch, head: As for :class:`Entry` (``mode`` is ``'infer'``).
        workdir (str): Directory for the ONNX files.
    """

    def __init__(self, config, variant, model, batch, workdir, head='config'):
        from iresnet_mmdet.deploy import export
        from iresnet_mmdet.deploy.runtime import make_session
        super().__init__(config, variant, 'infer', model, batch, amp=False,  # eval, fused if asked
                         head=head)
        shape = tuple(self.inputs.shape[-2:])
        stem = osp.join(workdir, f'{short_name(config)}_{variant}')
        export.export_onnx(export.build_graph(model, shape), stem + '.onnx', shape, {},
                           dynamic_batch=True)
        export.export_onnx(export.build_graph(model, shape, raw=True), stem + '_raw.onnx', shape,
                           {}, dynamic_batch=True)
        threads = torch.get_num_threads()
        self.session = make_session(stem + '.onnx', threads)
        self.raw_session = make_session(stem + '_raw.onnx', threads)
        self.images = graph_images(model, self.inputs)

    def step(self) -> None:
        self.session.run(None, {'images': self.images})

    def raw_outputs(self):
        return [torch.from_numpy(a) for a in self.raw_session.run(None, {'images': self.images})]


def graph_images(model, inputs: torch.Tensor):
    """The exported graph's input (BGR, 0-255) that its pre-processing turns into ``inputs``."""
    preprocessor = model.data_preprocessor
    images = inputs.cpu()
    if preprocessor._enable_normalize:
        images = images * preprocessor.std.cpu() + preprocessor.mean.cpu()
    if preprocessor._channel_conversion:
        images = images.flip(1)
    return images.contiguous().numpy()


def onnx_unsupported(model):
    """Why ``model`` cannot be exported (``None`` if it can)."""
    from iresnet_mmdet.deploy.export import check_supported_model
    try:
        check_supported_model(model)
    except ToolError as exc:
        return str(exc)
    return None


def make_entries(configs, variants, modes, args, workdir) -> List[Entry]:
    """Build every entry, and for each (config, head) the eager reference outputs
    (``rel_diff``)."""
    from iresnet_mmdet.engine.fuse import raw_forward, relative_difference
    entries = []
    for config in configs:
        for head in args.heads:
            torch.manual_seed(0)
            base = build_model(config, head)
            randomize_norms(base)
            base.to(args.device)
            new = config_entries(config, head, base, variants, modes, args, workdir)
            base.eval()
            with torch.autocast(args.device, dtype=torch.float16, enabled=args.amp):
                reference = raw_forward(base, new[0].inputs) if new else None
            for entry in new:
                if entry.mode == 'infer':
                    entry.rel_diff = relative_difference(entry.raw_outputs(), reference)
            del base
            entries += new
    return entries


def config_entries(config, head, base, variants, modes, args, workdir) -> List[Entry]:
    """The entries of one (config, head): every mode, step and variant that applies."""
    batch = synthetic_batch(args.batch, args.size, num_classes(base), has_masks(base),
                            args.device)
    steps = args.steps
    if 'network' in steps and not has_network_step(base):
        print(f'note: {short_name(config)} has no network-only step (two-stage detector)')
        steps = [s for s in steps if s != 'network']
    new = []
    for mode in modes:
        for step in steps:
            for variant in variants:
                parts = variant_parts(variant)
                if mode == 'train' and parts & set(INFER_ONLY):
                    if step == steps[0]:
                        print(f'note: {variant} is for inference only: not timed in train mode')
                    continue
                if 'onnxruntime' in parts:
                    if step == 'network':
                        continue  # the exported graph is the full detector
                    reason = onnx_unsupported(base)
                    if reason:
                        print(f'note: {short_name(config)} not timed with {variant}: {reason}')
                        continue
                    new.append(OnnxEntry(config, variant, copy.deepcopy(base), batch, workdir,
                                         head))
                    continue
                new.append(Entry(config, variant, mode, copy.deepcopy(base), batch, args.amp,
                                 step, head))
    return new


def measure(entries: Sequence[Entry], warmup: int, repeats: int) -> None:
    """Warm-up rounds, then timed rounds, each entry once per round, in order."""
    for round_index in range(warmup + repeats):
        for entry in entries:
            if round_index < warmup:
                entry.step()
            else:
                entry.timed_step()
        label = 'warm-up' if round_index < warmup else 'timed'
        print(f'round {round_index + 1}/{warmup + repeats} ({label}) done', flush=True)


def entry_key(entry) -> tuple:
    return entry.config, entry.head, entry.step_kind


def train_rel_diffs(entries: Sequence[Entry]) -> None:
    """``rel_diff`` of train entries: first loss against the eager entry of the same config, head
    and step."""
    eager = {entry_key(e): e.first_loss for e in entries
             if e.mode == 'train' and e.variant == 'eager'}
    for entry in entries:
        if entry.mode == 'train':
            ref = eager.get(entry_key(entry))
            entry.rel_diff = (abs(entry.first_loss - ref).item() / abs(ref).item()
                              if ref is not None else None)


def records(entries: Sequence[Entry], gflops: Dict[str, float], args, allocator: str) -> List[dict]:
    result = []
    for e in entries:
        seconds = statistics.median(e.seconds)
        result.append(dict(
            config=e.config, name=short_name(e.config), mode=e.mode, variant=e.variant,
            step=e.step_kind, head=e.head,
            device=args.device, amp=args.amp, batch=args.batch, size=args.size,
            threads=torch.get_num_threads(), img_per_s=args.batch / seconds,
            seconds_per_batch=seconds, repeats=len(e.seconds), gflops=gflops[e.config],
            rel_diff=e.rel_diff, allocator=allocator, torch=torch.__version__))
    return result


def _fmt(value, digits=2):
    return '-' if value is None else f'{value:.{digits}f}'


def label(row: dict) -> str:
    """The detector's name in the tables (with the head if ``--heads`` chose one)."""
    return row['name'] if row['head'] == 'config' else f'{row["name"]} ({row["head"]} head)'


def print_tables(rows: Sequence[dict]) -> None:
    """One markdown table per mode (full steps), ratios against the first config of the same
    variant; then the full steps against the network-only ones (:func:`print_overhead`)."""
    for mode in MODES:
        mode_rows = [r for r in rows if r['mode'] == mode and r['step'] == 'full']
        if not mode_rows:
            continue
        first = {}
        eager = {(r['config'], r['head']): r for r in mode_rows if r['variant'] == 'eager'}
        for r in mode_rows:
            first.setdefault(r['variant'], r)
        print(f'\n{mode} ({setting(mode_rows[0])}):')
        print('| detector | variant | img/s | time x | GFLOPs | GFLOPs x | time/FLOP x '
              '| x eager speed | rel. diff |')
        print('|---|---|---|---|---|---|---|---|---|')
        for variant in first:
            base = first[variant]
            for r in (r for r in mode_rows if r['variant'] == variant):
                time_x = base['img_per_s'] / r['img_per_s']
                flop_x = r['gflops'] / base['gflops']
                reference = eager.get((r['config'], r['head']))
                speed = r['img_per_s'] / reference['img_per_s'] if reference else None
                diff = '-' if r['rel_diff'] is None else f'{r["rel_diff"]:.1e}'
                print(f'| {label(r)} | {variant} | {r["img_per_s"]:.2f} | {time_x:.2f} | '
                      f'{r["gflops"]:.2f} | {flop_x:.3f} | {time_x / flop_x:.2f} | '
                      f'{_fmt(speed)} | {diff} |')
    print_overhead(rows)


def setting(row: dict) -> str:
    return (f'batch {row["batch"]}, {row["size"]}x{row["size"]}, {row["threads"]} threads, '
            f'{row["device"]}{", AMP" if row["amp"] else ""}')


def overhead_pairs(rows: Sequence[dict]) -> List[tuple]:
    """``(network row, full row)`` of every (config, head, mode, variant) timed both ways."""
    network = {(r['config'], r['head'], r['mode'], r['variant']): r for r in rows
               if r['step'] == 'network'}
    return [(network[key], r) for r in rows if r['step'] == 'full'
            for key in [(r['config'], r['head'], r['mode'], r['variant'])] if key in network]


def print_overhead(rows: Sequence[dict]) -> None:
    """The full step's img/s beside the network-only step's, and their ratio."""
    pairs = overhead_pairs(rows)
    if not pairs:
        return
    print(f'\nfull step / network-only step ({setting(pairs[0][1])}):')
    print('| detector | mode | variant | network img/s | full img/s | full / network |')
    print('|---|---|---|---|---|---|')
    for network, full in pairs:
        print(f'| {label(full)} | {full["mode"]} | {full["variant"]} | '
              f'{network["img_per_s"]:.2f} | {full["img_per_s"]:.2f} | '
              f'{full["img_per_s"] / network["img_per_s"]:.2f} |')


def print_profile(entry: Entry, top: int) -> None:
    """One more step of ``entry`` under ``torch.profiler``: its ``top`` ops by self time.

    Ops are grouped by input shapes, so that each convolution layer shape gets its own row; in
    ``train`` mode the backward ops (e.g. ``aten::convolution_backward``) appear beside the
    forward ones, and compiled entries show inductor's fused kernels.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if entry.device == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        entry.timed_step()
    step_ms = entry.seconds.pop() * 1e3  # not one of the timed repeats
    device_time = 'self_device_time_total' if entry.device == 'cuda' else 'self_cpu_time_total'
    events = sorted(prof.key_averages(group_by_input_shape=True),
                    key=lambda e: getattr(e, device_time), reverse=True)[:top]
    name = short_name(entry.config) + ('' if entry.head == 'config' else f'[{entry.head}]')
    print(f'\nprofile: {name} {entry.mode} {entry.variant} ({entry.step_kind} step), one step of '
          f'{step_ms:.0f} ms (under the profiler), top {top} ops by self time:')
    print('| op | input shapes | calls | self ms | % of step |')
    print('|---|---|---|---|---|')
    for event in events:
        self_ms = getattr(event, device_time) / 1e3
        shapes = ' '.join(str(s) for s in event.input_shapes if s)[:60] or '-'
        print(f'| {event.key[:60]} | {shapes} | {event.count} | {self_ms:.1f} | '
              f'{100 * self_ms / step_ms:.1f} |')


def check_args(args) -> None:
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ToolError('--device cuda, but PyTorch sees no CUDA device '
                        f'(torch {torch.__version__}); use --device cpu')
    if args.device == 'cuda' and 'onnxruntime' in args.variants:
        raise ToolError('variant onnxruntime runs on the CPU provider only; use --device cpu '
                        'or drop it from --variants')
    if args.amp and args.device != 'cuda':
        raise ToolError('--amp is for --device cuda only (float16 autocast); drop --amp on CPU')
    if args.batch < 1 or args.size < 32 or args.repeats < 1 or args.warmup < 0 or args.profile < 0:
        raise ToolError('--batch and --repeats must be >= 1, --size >= 32, --warmup and '
                        '--profile >= 0')
    if args.json and not osp.isdir(osp.dirname(osp.abspath(args.json))):
        raise ToolError(f"--json {args.json}: directory "
                        f"'{osp.dirname(osp.abspath(args.json))}' does not exist")


def check_variant_support(variants, device) -> None:
    """``compile`` needs a working compiler, ``onnxruntime`` its packages."""
    if any('compile' in variant_parts(v) for v in variants):
        from iresnet_mmdet.engine.compile import compile_failure
        reason = compile_failure(device)
        if reason:
            raise ToolError(f'variant compile: torch.compile does not work on {device} '
                            f'({reason}); drop it from --variants')
    if any('onnxruntime' in variant_parts(v) for v in variants):
        missing = [name for name in ('onnx', 'onnxruntime', 'onnxscript')
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise ToolError(f"variant onnxruntime needs {', '.join(missing)}: pip install "
                            '.[deploy] (or drop it from --variants)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', help='config files or mmdet:: names (default: see '
                        'the module docstring)')
    parser.add_argument('--mode', choices=('infer', 'train', 'both'), default='infer')
    parser.add_argument('--variants', default='eager',
                        help='comma-separated, e.g. eager,compile,fuse-conv-bn,channels-last,'
                        'compile+channels-last')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=300, help='square input size in pixels')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--amp', action='store_true', help='float16 autocast (CUDA only)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed rounds')
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds')
    parser.add_argument('--json', help='write one record per measurement to this file')
    parser.add_argument('--steps', default='full,network',
                        help='comma-separated: full (model.loss / model.predict) and network '
                        '(backbone + neck + head only, dummy loss); network is single-stage only')
    parser.add_argument('--heads', default='config',
                        help='comma-separated SSD heads: config (as configured), fixed (mmdet\'s '
                        'per-image SSDHead code), batched (BatchedSSDHead)')
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='after timing, profile one more step of every entry and print its '
                        'N most expensive ops (torch.profiler)')
    parser.add_argument('--malloc', choices=('auto', 'tcmalloc', 'glibc-tuned', 'system'),
                        default='auto', help='the allocator to measure under')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    variants = parse_variants(args.variants)
    args.steps = parse_choices(args.steps, STEPS, '--steps')
    args.heads = parse_choices(args.heads, HEADS, '--heads')
    configs = [resolve_config(c) for c in (args.configs or default_configs())]
    for config in configs:  # an SSD head for every --heads value other than config
        for head in args.heads:
            load_model_config(config, head)
    modes = MODES if args.mode == 'both' else (args.mode, )
    if argv is None:
        from backbone_speed import rerun_with_allocator
        rerun_with_allocator(args.malloc)
    from backbone_speed import MALLOC_ENV
    allocator = os.environ.get(MALLOC_ENV, 'system')
    if args.threads:
        torch.set_num_threads(args.threads)
    check_variant_support(variants, args.device)
    from iresnet_mmdet.analysis.complexity import model_complexity
    gflops = {c: model_complexity(load_model_config(c), (3, args.size, args.size),
                                  'paper')['gflops'] for c in configs}
    print(f'{len(configs)} configs x {len(variants)} variants x {len(modes)} modes, batch '
          f'{args.batch}, {args.size}x{args.size}, {torch.get_num_threads()} threads, '
          f'{args.device}, allocator: {allocator}', flush=True)
    from iresnet_mmdet.engine.fuse import FuseConvBNError
    try:
        with tempfile.TemporaryDirectory(prefix='detector_speed_') as workdir:
            entries = make_entries(configs, variants, modes, args, workdir)
        if not entries:
            raise ToolError('nothing to time: every (config, variant, mode) was left out (see '
                            'the notes above)')
        measure(entries, args.warmup, args.repeats)
    except FuseConvBNError as exc:
        raise ToolError(f'variant fuse-conv-bn: {exc}') from None
    except ValueError as exc:
        if 'Expected more than 1 value per channel' not in str(exc):
            raise
        raise ToolError(f'--batch {args.batch} cannot train: a BatchNorm sees a single value '
                        'per channel (e.g. at the 1x1 end of SSD\'s extra layers); use '
                        '--batch 2 or more for --mode train') from None
    except torch._dynamo.exc.TorchDynamoException as exc:
        first = ' '.join(str(exc).split())[:300]
        raise ToolError(f'torch.compile failed ({type(exc).__name__}: {first}); drop '
                        'compile from --variants') from None
    train_rel_diffs(entries)
    rows = records(entries, gflops, args, allocator)
    print_tables(rows)
    if args.profile:
        for entry in entries:
            if isinstance(entry, OnnxEntry):
                print(f'\nprofile: {short_name(entry.config)} {entry.variant}: not profiled '
                      '(torch.profiler does not see inside onnxruntime)')
                continue
            print_profile(entry, args.profile)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
        print(f'\n{len(rows)} records written to {args.json}')
    return 0


if __name__ == '__main__':
    run_main(main)
