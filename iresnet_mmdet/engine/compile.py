"""``torch.compile`` for detectors: the tensor-heavy modules only, checkpoints unchanged.

mmengine's own switch (``compile=True`` in a config) compiles the whole ``train_step``, optimizer
included, which crashes in dynamo with torch 2.13 on our training (an ``InternalTorchDynamoError``
while tracing the optimizer). Here only the forward of the backbone, the neck and the heads is
compiled: label assignment, losses, post-processing and the optimizer stay eager.

Each part is compiled in place with ``nn.Module.compile``, which compiles the module's ``__call__``
and keeps its parameters where they are: state-dict keys stay ordinary (no ``_orig_mod.`` prefix),
so checkpoints of compiled runs load into eager models and the other way round.

Inductor's layout optimisation runs convs on channels-last tensors, which suits dense convs but
makes oneDNN's grouped convs with few channels per group slower (iResGroupFix-50: the 16-channel
groups take twice their eager time); for CPU modules holding such convs it is turned off, which
made a compiled SSD300-iResGroupFix-50 training step 15 % faster (docs/detector_speed.md).

On CPU inductor needs a working C++ compiler; :func:`compile_failure` tries one small compilation
first, so that a machine without one gets one clear message and runs eagerly.

Use it with ``custom_hooks = [dict(type='CompileHook')]`` or ``tools/train.py --compile`` /
``tools/test.py --compile``.
"""
from typing import List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

#: The modules worth compiling, by attribute path; the ones a detector lacks are skipped. For
#: two-stage detectors the RoI heads' box and mask branches are compiled, not ``roi_head`` itself
#: (its ``loss``/``predict`` are called directly, never its ``__call__``).
DEFAULT_PARTS = ('backbone', 'neck', 'bbox_head', 'rpn_head', 'roi_head.bbox_head',
                 'roi_head.mask_head')


#: Grouped convs with at most this many input channels per group run slower channels-last.
NARROW_GROUP_CHANNELS = 16


def has_narrow_grouped_convs(module: torch.nn.Module) -> bool:
    """Whether ``module`` holds a CPU conv with 2 to :data:`NARROW_GROUP_CHANNELS` input
    channels per group."""
    return any(
        isinstance(m, torch.nn.Conv2d) and m.groups > 1
        and 2 <= m.in_channels // m.groups <= NARROW_GROUP_CHANNELS and m.weight.device.type == 'cpu'
        for m in module.modules())


def part_compile_kwargs(module: torch.nn.Module, compile_kwargs: dict) -> dict:
    """``compile_kwargs`` for ``module``, with inductor's layout optimisation off when the module
    has narrow grouped convs on CPU (unless ``mode`` or that option is given)."""
    options = dict(compile_kwargs.get('options') or {})
    if ('mode' in compile_kwargs or 'layout_optimization' in options
            or not has_narrow_grouped_convs(module)):
        return compile_kwargs
    options['layout_optimization'] = False
    return dict(compile_kwargs, options=options)


def compile_failure(device: str = 'cpu') -> Optional[str]:
    """Why ``torch.compile`` (inductor) cannot work on ``device``, or None if it can.

    Compiles and runs a one-line function: that needs the C++ compiler on CPU (Triton on CUDA).
    Inductor caches the result, so later calls take a few seconds at most.

    Args:
        device (str): ``'cpu'`` or ``'cuda'``.

    Returns:
        str or None: A one-line reason, e.g. ``'InvalidCxxCompiler: No working C++ compiler ...'``.
    """
    def probe(x):
        return x * 2 + 1

    try:
        out = torch.compile(probe)(torch.ones(4, device=device))
        if not torch.equal(out.cpu(), torch.full((4, ), 3.)):
            return 'a compiled test function returned wrong values'
    except Exception as exc:  # noqa: BLE001  (any failure means: run eagerly)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return f'{type(exc).__name__}: {lines[0] if lines else "(no message)"}'
    return None


def compile_parts(model: torch.nn.Module, parts: Sequence[str] = DEFAULT_PARTS,
                  **compile_kwargs) -> List[str]:
    """Compile the forward of the given submodules of ``model`` in place.

    Args:
        model (nn.Module): A detector (a model wrapper such as DDP is unwrapped).
        parts (Sequence[str]): Attribute paths of the submodules, e.g. ``'roi_head.bbox_head'``;
            missing ones are skipped.
        **compile_kwargs: Passed to ``torch.compile`` (e.g. ``mode``, ``dynamic``); for parts
            with narrow grouped convs on CPU, ``options`` gets ``layout_optimization=False``
            (:func:`part_compile_kwargs`).

    Returns:
        list[str]: The parts that were compiled.
    """
    if is_model_wrapper(model):
        model = model.module
    compiled = []
    for path in parts:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        module.compile(**part_compile_kwargs(module, compile_kwargs))
        compiled.append(path)
    return compiled


@HOOKS.register_module()
class CompileHook(Hook):
    """Compile the backbone, neck and heads of the model before training or testing.

    It acts once, at the first of ``before_train``, ``before_val`` and ``before_test``: after the
    checkpoint is loaded and after hooks of higher priority (``ChannelsLastHook``,
    ``FuseConvBNHook``) have changed the model. Without a working compiler it logs one warning and
    the run stays eager. Results equal the eager ones up to floating-point rounding.

    Args:
        parts (Sequence[str]): Attribute paths of the submodules to compile. Defaults to
            :data:`DEFAULT_PARTS`.
        **compile_kwargs: Passed to ``torch.compile`` (e.g. ``mode='max-autotune'``).
    """

    priority = 'LOW'

    def __init__(self, parts: Sequence[str] = DEFAULT_PARTS, **compile_kwargs):
        self.parts = tuple(parts)
        self.compile_kwargs = compile_kwargs
        self._done = False

    def before_train(self, runner) -> None:
        self._compile(runner)

    def before_val(self, runner) -> None:
        self._compile(runner)

    def before_test(self, runner) -> None:
        self._compile(runner)

    def _compile(self, runner) -> None:
        if self._done:
            return
        self._done = True
        param = next(runner.model.parameters(), None)
        device = param.device.type if param is not None else 'cpu'
        reason = compile_failure(device)
        if reason is not None:
            runner.logger.warning(f'CompileHook: torch.compile does not work on {device} '
                                  f'({reason}); running eagerly')
            return
        compiled = compile_parts(runner.model, self.parts, **self.compile_kwargs)
        runner.logger.info(f'CompileHook: compiled {", ".join(compiled) or "nothing"} '
                           '(the first iterations include the compilation)')


def add_compile_hook(cfg, enabled: bool = True) -> bool:
    """Make a config compile through :class:`CompileHook` (for ``--compile`` of the tools).

    mmengine's own ``compile`` setting of the config, which compiles the whole ``train_step`` and
    crashes, is turned into the hook too (its dict of ``torch.compile`` arguments is kept).

    Args:
        cfg (mmengine.Config): The config, changed in place.
        enabled (bool): Add the hook even if the config does not ask for compilation.

    Returns:
        bool: Whether the config now compiles.
    """
    requested = cfg.get('compile', False)
    if requested:
        cfg.compile = False
    if not (enabled or requested):
        return False
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type') in ('CompileHook', CompileHook)
               for h in hooks):
        kwargs = dict(requested) if isinstance(requested, dict) else {}
        hooks.append(dict(type='CompileHook', **kwargs))
    cfg.custom_hooks = hooks
    return True
