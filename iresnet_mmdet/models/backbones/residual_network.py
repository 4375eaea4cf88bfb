"""One engine for the Improved Residual Networks family (Duta et al., ICPR 2020).

The paper changes ResNet in three independent ways, and each is one argument of
:class:`ResidualNetwork`:

* ``layout`` -- where the norms and activations sit along a stage:
  ``'resnet'`` (post-activation, He et al. 2015), ``'preact'`` (pre-activation, He et al. 2016) or
  ``'stage'`` (the paper's start / middle / end blocks, :func:`stage_placement`).
* ``shortcut`` -- how the projection shortcut of a stage's first block downsamples:
  ``'conv'`` (strided 1x1 conv + norm) or ``'pool'`` (the improved shortcut: 3x3 max-pool with the
  stride, then 1x1 conv + norm).
* ``block`` -- the building block: ``'basic'``, ``'bottleneck'`` or ``'group'`` (the ResGroup block:
  a wide grouped 3x3 conv whose output is half its width).

Independently of these, a network's *setting* -- the input it is made for -- is a preset
attribute that any argument can override: the dimensionality (``dims``: 2 for images, 3 for video
clips), the stem (:class:`StemSpec`: its conv and optional max-pool), the blocks per stage of each
depth (``arch_settings``, any number of stages) and the stages' strides (``default_strides``, per
dimension where needed). ImageNet, CIFAR and video networks are presets of the same engine.

The named networks of the paper (:mod:`.variants`) are thin presets of these switches whose module
and state-dict names equal the authors' released models, so their ImageNet checkpoints load as is.
"""
import dataclasses
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer, build_plugin_layer
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.registry import MODELS
from ...errors import ToolError
from .grouped_conv import GroupedConv2d

LAYOUTS = ('resnet', 'preact', 'stage')
SHORTCUTS = ('conv', 'pool')
BLOCKS = ('basic', 'bottleneck', 'group')
DIMS = (2, 3)
STYLES = ('pytorch', 'caffe')


class BackboneConfigError(ToolError, ValueError):
    """A backbone argument that cannot work, with a message naming the fix (bad input to a tool)."""


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools in channels-last layout on the CPU.

    PyTorch's CPU max-pool kernel is about 10x slower on NCHW-contiguous tensors than on
    channels-last ones (torch 2.x; see docs/speed_memory.md for measured figures); the improved
    shortcut has one pool per stage, so this matters. Results and gradients are those of
    ``nn.MaxPool2d``; the output keeps the input's memory layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != 'cpu' or x.dim() != 4 or x.is_contiguous(
                memory_format=torch.channels_last):
            return super().forward(x)
        out = super().forward(x.contiguous(memory_format=torch.channels_last))
        return out.contiguous()


MAX_POOLS = {2: MaxPool2d, 3: nn.MaxPool3d}

#: A size or stride: one int for every dimension, or one value per dimension (``(t, h, w)``).
Size = Union[int, Tuple[int, ...]]


@dataclass(frozen=True)
class Placement:
    """Where one block applies its norms and activations.

    Attributes:
        pre_norm: a norm (``bn0``) on the block input, before the residual branch.
        pre_act: a ReLU on the block input, before the residual branch.
        shared_pre: the pre-activated input also feeds the shortcut (otherwise the shortcut
            sees the raw input).
        branch_norm: the last conv of the branch is followed by its norm, before the addition.
        post_norm: the last conv's norm is applied after the addition instead.
        post_act: a ReLU after the addition.
    """
    pre_norm: bool = False
    pre_act: bool = False
    shared_pre: bool = False
    branch_norm: bool = True
    post_norm: bool = False
    post_act: bool = True


RESNET_PLACEMENT = Placement()


def resnet_placement(stage: int, index: int, num_blocks: int, last_stage: bool) -> Placement:
    """Post-activation ResNet: conv-norm-ReLU ..., conv-norm, add, ReLU."""
    return RESNET_PLACEMENT


def preact_placement(stage: int, index: int, num_blocks: int, last_stage: bool) -> Placement:
    """Pre-activation ResNet: norm-ReLU-conv ..., add; norm + ReLU after the network.

    A stage's first block pre-activates before the split, so its projection shortcut sees the
    normalised input (He et al. 2016). The network's very first block needs no pre-activation: the
    stem already ends with norm + ReLU. The final norm + ReLU is the last block's post-addition
    norm.
    """
    first_of_network = stage == 0 and index == 0
    last_of_network = last_stage and index == num_blocks - 1
    return Placement(
        pre_norm=not first_of_network,
        pre_act=not first_of_network,
        shared_pre=index == 0,
        branch_norm=False,
        post_norm=last_of_network,
        post_act=last_of_network)


def stage_placement(stage: int, index: int, num_blocks: int, last_stage: bool) -> Placement:
    """The paper's stage-based placement (ResStage, iResNet, iResGroup).

    * start (index 0): conv-norm-ReLU ..., conv-norm, add; nothing after the addition.
    * first middle (index 1): ReLU on the input, shared by branch and shortcut, no ``bn0``.
      The authors' code applies an in-place ReLU to the input there, which silently reaches the
      shortcut too; with their weights the stage start is therefore "add, then ReLU". We apply that
      ReLU explicitly (out of place) to both paths, which keeps their numerics and module layout.
    * middle: ``bn0``-ReLU-conv ..., add; nothing after the addition.
    * end (last): like a middle block, then norm + ReLU after the addition.
    """
    if num_blocks < 2:
        raise BackboneConfigError('the stage layout needs at least 2 blocks per stage (a start '
                                  f'and an end block), got {num_blocks}')
    if index == 0:
        return Placement(branch_norm=True, post_act=False)
    end = index == num_blocks - 1
    return Placement(
        pre_norm=index > 1,
        pre_act=True,
        shared_pre=index == 1,
        branch_norm=False,
        post_norm=end,
        post_act=end)


PLACEMENTS = dict(resnet=resnet_placement, preact=preact_placement, stage=stage_placement)


@dataclass(frozen=True)
class ConvSpec:
    """One conv of a residual branch; ``conv_cfg`` (e.g. a DCN) replaces the block's conv type."""
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: Size = 1
    dilation: int = 1
    groups: int = 1
    conv_cfg: Optional[dict] = None


@dataclass(frozen=True)
class StemSpec:
    """The stem of a network: conv-norm-ReLU (``conv1``, ``bn1``), then an optional max-pool.

    Sizes are one int for every dimension or one value per dimension.

    Attributes:
        kernel_size: kernel of the stem conv.
        stride: stride of the stem conv.
        padding: padding of the stem conv.
        pool_kernel: kernel of the max-pool; ``None``: this stem has no max-pool.
        pool_stride: stride of the max-pool.
        pool_padding: padding of the max-pool.
    """
    kernel_size: Size = 7
    stride: Size = 2
    padding: Size = 3
    pool_kernel: Optional[Size] = 3
    pool_stride: Size = 2
    pool_padding: Size = 1


#: ImageNet (224x224): 7x7 stride-2 conv, 3x3 stride-2 max-pool.
IMAGENET_STEM = StemSpec()


def default_conv_cfg(spec: ConvSpec) -> Optional[dict]:
    """The conv type of a branch conv when no ``conv_cfg`` is given: ``nn.Conv2d``, or for
    grouped convs :class:`GroupedConv2d` (an ``nn.Conv2d`` that trains faster on CPUs)."""
    return dict(type=GroupedConv2d.__name__) if spec.groups > 1 else None


def branch_convs(block: str, in_channels: int, width: int, out_channels: int, stride: Size,
                 dilation: int, groups: int, style: str = 'pytorch') -> List[ConvSpec]:
    """The convs of a building block's residual branch.

    ``style='pytorch'`` strides the 3x3 conv (the authors' models, torchvision); ``'caffe'``
    strides the first 1x1 of bottleneck and ResGroup blocks (mmdet's caffe style; a basic block
    strides its first conv either way). Kernels are 3 or 1 in every dimension: 3x3 / 1x1 in 2D,
    3x3x3 / 1x1x1 in 3D.
    """
    if block == 'basic':
        return [ConvSpec(in_channels, width, 3, stride, dilation),
                ConvSpec(width, out_channels, 3)]
    stride_1x1, stride_3x3 = (1, stride) if style == 'pytorch' else (stride, 1)
    return [ConvSpec(in_channels, width, 1, stride_1x1),
            ConvSpec(width, width, 3, stride_3x3, dilation, groups),
            ConvSpec(width, out_channels, 1)]


def block_widths(block: str, base_channels: int, stage: int) -> Tuple[int, int]:
    """(3x3 width, output channels) of a stage's blocks.

    Bottleneck expands its width by 4; the ResGroup block is "inverted": its grouped 3x3 is 4x
    the base width and its output is half of that.
    """
    planes = base_channels * 2**stage
    if block == 'basic':
        return planes, planes
    if block == 'bottleneck':
        return planes, planes * 4
    return planes * 4, planes * 2


def is_strided(stride: Size) -> bool:
    """Whether a stride (int or per dimension) downsamples along some dimension."""
    return any(s > 1 for s in _as_tuple(stride, 1))


def stride_product(a: Size, b: Size) -> Size:
    """The stride of two strided ops in a row (per dimension; an int where both are ints)."""
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    dims = len(b) if isinstance(a, int) else len(a)
    return tuple(x * y for x, y in zip(_as_tuple(a, dims), _as_tuple(b, dims)))


def _as_tuple(value: Size, dims: int) -> Tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, ) * dims


class ReLU(nn.ReLU):
    """``nn.ReLU`` whose in-place behaviour can be chosen per call.

    A block owns one ReLU module and calls it at every activation point, as the authors' blocks
    do (complexity counters that key on modules see the same calls). Calls on a tensor that is
    still needed elsewhere pass ``inplace=False``.
    """

    def forward(self, x: torch.Tensor, inplace: Optional[bool] = None) -> torch.Tensor:
        return F.relu(x, inplace=self.inplace if inplace is None else inplace)


class ResidualBlock(BaseModule):
    """A residual block: building block x norm/activation placement x shortcut.

    Module names follow the authors' models: ``bn0`` (pre-norm), ``conv{i}`` / ``bn{i}`` (the i-th
    conv and its norm; the last norm sits either inside the branch or after the addition) and
    ``downsample`` (the projection shortcut, or ``None``). Plugins (mmdet's ``plugins``) are named
    by mmcv's ``build_plugin_layer`` and run after the i-th conv (after its norm and ReLU; after the
    last conv, before the addition).

    Args:
        convs: the branch convs, see :func:`branch_convs`.
        placement: where the norms and activations sit, see :class:`Placement`.
        downsample: the shortcut module, or ``None`` for identity.
        conv_cfg: config of the conv layers.
        norm_cfg: config of the norm layers.
        with_cp: use activation checkpointing (saves memory, costs a recomputation).
        plugins: plugin layers, each ``dict(cfg=..., position='after_conv{i}')``.
        init_cfg: initialisation config.
    """

    def __init__(self,
                 convs: Sequence[ConvSpec],
                 placement: Placement,
                 downsample: Optional[nn.Module] = None,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 plugins: Sequence[dict] = (),
                 init_cfg=None):
        super().__init__(init_cfg)
        self.placement = placement
        self.with_cp = with_cp
        self.num_convs = len(convs)
        # mmcv's fuse_conv_bn folds a norm into the conv registered just before it: norms that
        # do not normalise a conv's output (bn0, a post-addition norm) are registered first.
        self.pre_norm_name = None
        if placement.pre_norm:
            self.pre_norm_name, norm = build_norm_layer(norm_cfg, convs[0].in_channels, postfix=0)
            self.add_module(self.pre_norm_name, norm)
        post_norm_name = None
        if placement.post_norm:
            post_norm_name, norm = build_norm_layer(
                norm_cfg, convs[-1].out_channels, postfix=len(convs))
            self.add_module(post_norm_name, norm)
        self.norm_names = []
        for i, spec in enumerate(convs, start=1):
            conv = build_conv_layer(
                spec.conv_cfg or conv_cfg or default_conv_cfg(spec), spec.in_channels,
                spec.out_channels, spec.kernel_size,
                stride=spec.stride, padding=spec.dilation * (spec.kernel_size // 2),
                dilation=spec.dilation, groups=spec.groups, bias=False)
            self.add_module(f'conv{i}', conv)
            if i < len(convs) or placement.branch_norm:
                name, norm = build_norm_layer(norm_cfg, spec.out_channels, postfix=i)
                self.add_module(name, norm)
                self.norm_names.append(name)
        if post_norm_name:
            self.norm_names.append(post_norm_name)
        self.relu = ReLU(inplace=True)
        self.downsample = downsample
        self.plugin_names = self._make_plugins(convs, plugins)

    def _make_plugins(self, convs: Sequence[ConvSpec],
                      plugins: Sequence[dict]) -> List[List[str]]:
        """Build the plugins; names per conv, in mmdet's order (by position, then as given)."""
        names = [[] for _ in convs]
        for index, position in enumerate(plugin_positions(len(convs))):
            for plugin in plugins:
                if plugin['position'] != position:
                    continue
                cfg = dict(plugin['cfg'])
                name, layer = build_plugin_layer(
                    cfg, postfix=cfg.pop('postfix', ''), in_channels=convs[index].out_channels)
                if hasattr(self, name):
                    raise BackboneConfigError(
                        f"duplicate plugin name '{name}' in a block; give plugins of the same "
                        "type different cfg.postfix values")
                self.add_module(name, layer)
                names[index].append(name)
        return names

    @property
    def last_norm(self) -> Optional[nn.Module]:
        """The norm of the last conv (in the branch or after the addition), if any."""
        if len(self.norm_names) < self.num_convs:
            return None
        return getattr(self, self.norm_names[-1])

    def _plugins(self, x: torch.Tensor, index: int) -> torch.Tensor:
        for name in self.plugin_names[index]:
            x = getattr(self, name)(x)
        return x

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(1, self.num_convs + 1):
            out = getattr(self, f'conv{i}')(out)
            if i < self.num_convs:
                out = self.relu(getattr(self, self.norm_names[i - 1])(out))
            elif self.placement.branch_norm:
                out = self.last_norm(out)
            out = self._plugins(out, i - 1)
        return out

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.placement
        pre = x
        if p.pre_norm:
            pre = getattr(self, self.pre_norm_name)(pre)
        if p.pre_act:
            # Out of place when ``pre`` is still the block input (needed by the shortcut).
            pre = self.relu(pre, inplace=p.pre_norm)
        identity = pre if p.shared_pre else x
        if self.downsample is not None:
            identity = self.downsample(identity)
        out = self._branch(pre)
        out += identity  # the branch output is a fresh tensor
        if p.post_norm:
            out = self.last_norm(out)
        if p.post_act:
            out = self.relu(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


def plugin_positions(num_convs: int) -> List[str]:
    """The plugin positions of a block with ``num_convs`` convs: ``after_conv1`` ..."""
    return [f'after_conv{i}' for i in range(1, num_convs + 1)]


@MODELS.register_module()
class ResidualNetwork(BaseModule):
    """The residual-network engine behind every backbone of this plugin.

    The constructor follows mmdet's ``ResNet``; ``layout``, ``shortcut`` and ``block`` are the three
    independent design choices of the paper (see the module docstring), so that ablations are one
    config line, e.g. ``dict(type='ResidualNetwork', depth=50, layout='stage', shortcut='conv')``
    is ResStage-50. Depths map to blocks per stage through ``arch_settings``; the setting (``dims``,
    stem, strides, widths) comes from the preset's ``default_*`` attributes unless given.

    Args:
        depth: network depth, a key of ``arch_settings``.
        layout: ``'resnet'``, ``'preact'`` or ``'stage'``; ``None`` takes the preset's.
        shortcut: ``'conv'`` or ``'pool'``; ``None`` takes the preset's.
        block: ``'basic'``, ``'bottleneck'`` or ``'group'``; ``None`` takes the depth's default
            (basic below 50 layers, bottleneck from 50).
        stem_pool: the stem's max-pool. ``None``: only with the conv shortcut, and only if the stem
            has one (the improved shortcut takes over the stem pool's downsampling).
        groups: groups of the grouped 3x3 conv per stage (``group`` block only); ``None`` takes
            the preset's (ResGroup: 8, 16, 32, 64; ResGroupFix: 64 everywhere).
        in_channels: input image channels.
        stem_channels: output channels of the stem; ``None`` means ``base_channels``.
        base_channels: width of the first stage; ``None`` takes the preset's (64; CIFAR: 16).
        num_stages: number of stages, from 1 to the depth's number of stages (4 for the ImageNet and
            video depths, 3 for CIFAR); ``None``: all of them.
        strides: stride of each stage, an int or one per dimension (``(t, h, w)`` in 3D); ``None``
            takes the preset's architectural strides: ``default_strides`` behind a stem with its
            max-pool; without the pool, the first stage also takes the pool's stride (ImageNet:
            ``(1, 2, 2, 2)`` with the stem pool, ``(2, 2, 2, 2)`` without). SSD sets the third stage
            to 1. With the improved shortcut, a stage whose stride is set to 1 keeps its max-pool at
            stride 1 (a 3x3 max filter), as in the authors' detection models, so checkpoints load
            unchanged.
        dilations: dilation of the 3x3 conv of each stage.
        out_indices: stages whose outputs are returned; ``None``: every stage.
        style: ``'pytorch'`` (stride on the 3x3 conv, the authors' models) or ``'caffe'`` (stride
            on the first 1x1 of bottleneck and ResGroup blocks), as in mmdet's ``ResNet``.
        deep_stem: replace the stem conv by three 3x3 convs (``stem``, mmdet's ``ResNetV1d``
            layout: ``stem_channels // 2``, ``stem_channels // 2``, ``stem_channels``; the first
            takes the stem's stride).
        avg_down: downsample projection shortcuts by average pooling (kernel = stride) before a
            stride-1 1x1 conv, as mmdet. Not with ``shortcut='pool'``, which already pools.
        frozen_stages: stages to freeze (no gradient, norm in eval mode); 0 freezes the stem,
            -1 nothing.
        conv_cfg: config of conv layers; ``None``: ``Conv2d`` (:class:`GroupedConv2d` for the
            grouped 3x3 convs: the same layer, faster in CPU training), or ``Conv3d`` when
            ``dims=3``.
        norm_cfg: config of norm layers (BN, SyncBN, GN, ...); with ``dims=3``, BN means BN3d.
        norm_eval: keep norm layers in eval mode during training (frozen statistics).
        dcn: a deformable conv config (mmcv's ``dict(type='DCN', deform_groups=1)`` or ``'DCNv2'``)
            that replaces the 3x3 conv of bottleneck and ResGroup blocks (keeping its groups) in
            the stages of ``stage_with_dcn``; ``fallback_on_stride=True`` keeps a plain conv where
            that 3x3 is strided. 2D only.
        stage_with_dcn: per stage, whether its blocks use ``dcn``.
        plugins: mmcv plugin layers as in mmdet's ``ResNet``: a list of ``dict(cfg=...,
            position='after_conv1' | 'after_conv2' | 'after_conv3', stages=(bool per stage))``
            (``stages`` omitted: every stage; basic blocks have ``after_conv1`` and
            ``after_conv2``).
            Several plugins of one type need distinct ``cfg.postfix`` values.
        with_cp: activation checkpointing in every block: only each block's input is kept for the
            backward pass, the rest is recomputed (about one extra forward).
        zero_init_residual: zero the norm that ends each residual branch so that blocks start as
            identities. Only possible where every branch ends in a norm (``layout='resnet'``).
        pretrained: deprecated (as in mmdet): a checkpoint path, turned into
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)`` with a warning.
        init_cfg: initialisation config. The default is the authors' (Kaiming normal, fan_out, for
            convs; weight 1, bias 0 for norms; the offsets of deformable convs start at zero).
        dims: 2 (images, ``(N, C, H, W)``) or 3 (clips, ``(N, C, T, H, W)``: 3D convs, norms and
            max-pools, 3x3x3 kernels in the blocks); ``None`` takes the preset's.
        stem: a :class:`StemSpec`, or a dict of some of its fields that replace the preset's
            (e.g. ``dict(kernel_size=3, stride=1, padding=1, pool_kernel=None)``).
        cp_blocks: with ``with_cp``, the blocks per checkpoint. 1 (default, as mmdet): every block
            keeps its input. ``k > 1``: one checkpoint per run of ``k`` blocks keeps only every k-th
            block input, and the backward recomputes one run at a time, so memory goes like
            ``blocks / k + k`` block activations: ``k ~ sqrt(blocks per stage)`` is the minimum,
            for the same extra forward. For extreme depths (a 3002-layer CIFAR net) where even one
            input per block does not fit.

    Unlike mmdet's ``ResNet``, ``zero_init_residual`` defaults to ``False`` (the authors' default;
    the stage layouts cannot zero-initialise their middle blocks) and ``out_indices`` to every
    stage.
    """

    arch_settings = {
        18: ('basic', (2, 2, 2, 2)),
        34: ('basic', (3, 4, 6, 3)),
        50: ('bottleneck', (3, 4, 6, 3)),
        101: ('bottleneck', (3, 4, 23, 3)),
        152: ('bottleneck', (3, 8, 36, 3)),
        200: ('bottleneck', (3, 24, 36, 3)),
    }
    # Design choices of the preset; every one can be overridden by the matching argument.
    default_layout = 'resnet'
    default_shortcut = 'conv'
    #: Groups of the ``group`` block per stage: ResGroup's fixed group width of 32.
    default_groups = (8, 16, 32, 64)
    # The setting of the preset (what input it is made for); also overridable by arguments.
    #: Name of the setting (the paper's table a classifier of this preset belongs to).
    setting = 'imagenet'
    default_dims = 2
    default_stem = IMAGENET_STEM
    #: Strides of the stages behind the full stem (with its max-pool).
    default_strides = (1, 2, 2, 2)
    default_base_channels = 64
    #: Outputs of the classification form (:mod:`..classifier`) by default.
    default_num_classes = 1000

    def __init__(self,
                 depth: int,
                 layout: Optional[str] = None,
                 shortcut: Optional[str] = None,
                 block: Optional[str] = None,
                 stem_pool: Optional[bool] = None,
                 groups: Optional[Sequence[int]] = None,
                 in_channels: int = 3,
                 stem_channels: Optional[int] = None,
                 base_channels: Optional[int] = None,
                 num_stages: Optional[int] = None,
                 strides: Optional[Sequence[Size]] = None,
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Optional[Sequence[int]] = None,
                 style: str = 'pytorch',
                 deep_stem: bool = False,
                 avg_down: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 dcn: Optional[dict] = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[Sequence[dict]] = None,
                 with_cp: bool = False,
                 zero_init_residual: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg=None,
                 dims: Optional[int] = None,
                 stem: Union[StemSpec, dict, None] = None,
                 cp_blocks: int = 1):
        arguments = _arguments(locals())
        dims = dims or self.default_dims
        _check_choice('dims', dims, DIMS)
        super().__init__(_init_cfg(pretrained, init_cfg, dims, type(self).__name__))
        self._configure(arguments)
        self._build()
        self._freeze_stages()

    @classmethod
    def plan(cls, **kwargs) -> 'ResidualNetwork':
        """The network these arguments describe, checked but not built (no layers, no weights).

        The tools' pre-flight checks use it: a bad argument raises what the constructor raises
        (``BackboneConfigError``, ``KeyError`` for a depth, ``TypeError`` for an unknown argument),
        and :meth:`stage_out_channels` gives the channels a neck needs.

        Args:
            **kwargs: The constructor's arguments.

        Returns:
            ResidualNetwork: An empty module with the resolved settings as attributes; for a
            subclass with a constructor of its own (which may take other arguments and do more),
            the built network.
        """
        import inspect
        if cls.__init__ is not ResidualNetwork.__init__:
            return cls(**kwargs)
        bound = inspect.signature(cls.__init__).bind(None, **kwargs)
        bound.apply_defaults()
        plan = cls.__new__(cls)
        BaseModule.__init__(plan)
        plan._configure(_arguments(bound.arguments))
        return plan

    def stage_out_channels(self) -> Tuple[int, ...]:
        """Output channels of each stage, from the settings (the same before and after building).
        """
        return tuple(block_widths(self.block, self.base_channels, i)[1]
                     for i in range(self.num_stages))

    def _configure(self, args: dict) -> None:
        """Resolve the constructor's arguments against the preset, check them, store them."""
        self.dims = args['dims'] or self.default_dims
        self._set_design(args['depth'], args['layout'], args['shortcut'], args['block'],
                         args['num_stages'])
        self._set_geometry(args['stem'], args['stem_pool'], args['strides'], args['dilations'],
                           args['groups'], args['out_indices'])
        self._check_options(args)
        for name in ('style', 'deep_stem', 'avg_down', 'frozen_stages', 'norm_eval', 'dcn',
                     'plugins', 'with_cp', 'cp_blocks', 'zero_init_residual', 'in_channels'):
            setattr(self, name, args[name])
        self.stage_with_dcn = tuple(args['stage_with_dcn'])
        conv_cfg = args['conv_cfg']
        self.conv_cfg = dict(type='Conv3d') if conv_cfg is None and self.dims == 3 else conv_cfg
        self.norm_cfg = _norm_cfg_for_dims(args['norm_cfg'], self.dims)
        self.base_channels = args['base_channels'] or self.default_base_channels
        self.stem_channels = args['stem_channels'] or self.base_channels

    def _set_design(self, depth: int, layout: Optional[str], shortcut: Optional[str],
                    block: Optional[str], num_stages: Optional[int]) -> None:
        """The paper's three switches (the preset's unless given), the depth and the stages."""
        default_block, stage_blocks = self.depth_setting(depth)
        self.depth = depth
        self.layout = layout or self.default_layout
        self.shortcut = shortcut or self.default_shortcut
        self.block = block or default_block
        _check_choice('layout', self.layout, LAYOUTS)
        _check_choice('shortcut', self.shortcut, SHORTCUTS)
        _check_choice('block', self.block, BLOCKS)
        num_stages = len(stage_blocks) if num_stages is None else num_stages
        if not 1 <= num_stages <= len(stage_blocks):
            raise BackboneConfigError(
                f'num_stages must be between 1 and {len(stage_blocks)} (the stages of depth '
                f'{depth}), got {num_stages}')
        self.num_stages = num_stages
        self.stage_blocks = stage_blocks[:num_stages]

    def _set_geometry(self, stem, stem_pool: Optional[bool], strides, dilations, groups,
                      out_indices) -> None:
        """Stem, strides, dilations, groups and outputs of the stages."""
        self.stem_spec = self._stem_spec(stem)
        self.stem_pool = self._use_stem_pool(stem_pool, self.shortcut, self.stem_spec)
        # The improved shortcut has a max-pool in every stage whose *architectural* stride is > 1.
        self.arch_strides = self._arch_strides(self.stem_spec, self.stem_pool)
        self.strides = (self.arch_strides if strides is None else
                        tuple(self._size(s) for s in strides))
        self.dilations = tuple(dilations)
        groups = tuple(groups) if groups is not None else self.default_groups
        if self.block != 'group':
            groups = (1, ) * len(self.depth_setting(self.depth)[1])
        self.groups = groups
        for name, value in (('strides', self.strides), ('dilations', dilations),
                            ('groups', groups)):
            if len(value) < self.num_stages:
                raise BackboneConfigError(
                    f'{name} needs one value per stage ({self.num_stages}), got {value}')
        out_indices = tuple(range(self.num_stages)) if out_indices is None else out_indices
        if max(out_indices) >= self.num_stages or min(out_indices) < 0:
            raise BackboneConfigError(
                f'out_indices {tuple(out_indices)} must lie in [0, {self.num_stages})')
        self.out_indices = tuple(out_indices)

    def _check_options(self, args: dict) -> None:
        """The options that must agree with the design (style, checkpointing, init, dcn, plugins).
        """
        _check_choice('style', args['style'], STYLES)
        cp_blocks = args['cp_blocks']
        if not (isinstance(cp_blocks, int) and cp_blocks >= 1):
            raise BackboneConfigError(
                f'cp_blocks must be an int >= 1 (blocks per checkpoint), got {cp_blocks!r}')
        if args['zero_init_residual'] and self.layout != 'resnet':
            raise BackboneConfigError(
                f"zero_init_residual=True needs every residual branch to end in a norm, but with "
                f"layout='{self.layout}' the middle blocks' branches end in a conv (their norm is "
                f"the next block's bn0); the authors' code crashes here. Use "
                f"zero_init_residual=False.")
        if args['avg_down'] and self.shortcut == 'pool':
            raise BackboneConfigError(
                "avg_down=True average-pools the projection shortcut, but shortcut='pool' (the "
                "paper's improved shortcut) already max-pools it; use one of them: avg_down=False, "
                "or shortcut='conv' with avg_down=True")
        _check_dcn(args['dcn'], args['stage_with_dcn'], self.num_stages, self.block, self.dims,
                   args['conv_cfg'])
        _check_plugins(args['plugins'], self.num_stages,
                       len(branch_convs(self.block, 1, 1, 1, 1, 1, 1)))

    def _build(self) -> None:
        """The stem and the stages (``layer1`` ...), from the stored settings."""
        self._make_stem(self.in_channels, self.stem_channels)
        channels = self.stem_channels
        self.res_layers = []
        stage_channels = []
        for i in range(self.num_stages):
            layer, channels = self._make_stage(i, channels, self.base_channels,
                                               self.arch_strides[i])
            layer_name = f'layer{i + 1}'
            self.add_module(layer_name, layer)
            self.res_layers.append(layer_name)
            stage_channels.append(channels)
        #: Output channels of each built stage (for the neck's ``in_channels``).
        self.out_channels = tuple(stage_channels)
        self.feat_dim = stage_channels[-1]

    def _make_stage(self, i: int, in_channels: int, base_channels: int,
                    arch_stride: Size) -> Tuple[nn.Sequential, int]:
        """Stage ``i`` (0-based) and its output channels."""
        width, out_channels = block_widths(self.block, base_channels, i)
        placement = PLACEMENTS[self.layout]
        plugins = stage_plugins(self.plugins, i)
        blocks = []
        channels = in_channels
        for j in range(self.stage_blocks[i]):
            stride = self.strides[i] if j == 0 else 1
            shortcut = None
            if j == 0:
                shortcut = self._make_shortcut(channels, out_channels, stride, arch_stride)
            convs = branch_convs(self.block, channels, width, out_channels, stride,
                                 self.dilations[i], self.groups[i], self.style)
            if self.dcn is not None and self.stage_with_dcn[i]:
                convs = with_dcn(convs, self.dcn)
            blocks.append(
                ResidualBlock(
                    convs, placement(i, j, self.stage_blocks[i], i == self.num_stages - 1),
                    shortcut, self.conv_cfg, self.norm_cfg, self.with_cp and self.cp_blocks == 1,
                    plugins))
            channels = out_channels
        return nn.Sequential(*blocks), out_channels

    @classmethod
    def depth_setting(cls, depth: int) -> Tuple[str, Tuple[int, ...]]:
        """(default block, blocks per stage) of a depth; a clear error for unknown depths."""
        if depth not in cls.arch_settings:
            raise KeyError(f'invalid depth {depth} for {cls.__name__}; '
                           f'valid depths: {sorted(cls.arch_settings)}')
        return cls.arch_settings[depth]

    def _size(self, value: Size) -> Size:
        """A size or stride as the modules get it: 2D keeps ints (module attributes as in the
        authors' models), 3D always gets one value per dimension ``(t, h, w)``."""
        if isinstance(value, (tuple, list)) and len(value) != self.dims:
            raise BackboneConfigError(
                f'{tuple(value)} has {len(value)} values but the network is {self.dims}D; give '
                'one value per dimension or a single int')
        if self.dims == 2:
            return tuple(value) if isinstance(value, list) else value
        return _as_tuple(value, self.dims)

    def _stem_spec(self, stem: Union[StemSpec, dict, None]) -> StemSpec:
        if stem is None or isinstance(stem, StemSpec):
            spec = stem or self.default_stem
        else:
            fields = {f.name for f in dataclasses.fields(StemSpec)}
            unknown = sorted(set(stem) - fields)
            if unknown:
                raise BackboneConfigError(
                    f'unknown stem field(s) {unknown}; valid: {sorted(fields)}')
            spec = dataclasses.replace(self.default_stem, **stem)
        values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(StemSpec)}
        return StemSpec(**{k: v if v is None else self._size(v) for k, v in values.items()})

    @staticmethod
    def _use_stem_pool(stem_pool: Optional[bool], shortcut: str, stem: StemSpec) -> bool:
        has_pool = stem.pool_kernel is not None
        if stem_pool is None:
            return shortcut == 'conv' and has_pool
        if stem_pool and not has_pool:
            raise BackboneConfigError(
                'stem_pool=True, but the stem has no max-pool (pool_kernel=None); give '
                'stem=dict(pool_kernel=...) or leave stem_pool unset')
        return stem_pool

    def _arch_strides(self, stem: StemSpec, stem_pool: bool) -> Tuple[Size, ...]:
        """The preset's stage strides; without the stem's max-pool, stage 1 takes its stride."""
        strides = [self._size(s) for s in self.default_strides]
        if stem.pool_kernel is not None and not stem_pool:
            strides[0] = stride_product(strides[0], stem.pool_stride)
        return tuple(strides)

    def _make_stem(self, in_channels: int, stem_channels: int) -> None:
        stem = self.stem_spec
        if self.deep_stem:
            self.stem = self._deep_stem(in_channels, stem_channels)
        else:
            self.conv1 = build_conv_layer(
                self.conv_cfg, in_channels, stem_channels, stem.kernel_size, stride=stem.stride,
                padding=stem.padding, bias=False)
            self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix=1)
            self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        if self.stem_pool:
            self.maxpool = self._max_pool(stem.pool_kernel, stem.pool_stride, stem.pool_padding)

    def _deep_stem(self, in_channels: int, stem_channels: int) -> nn.Sequential:
        """Three conv-norm-ReLU with 3x3 kernels, mmdet's ``deep_stem`` layout (``stem.{0..8}``)."""
        widths = (in_channels, stem_channels // 2, stem_channels // 2, stem_channels)
        layers = []
        for i in range(3):
            layers += [
                build_conv_layer(self.conv_cfg, widths[i], widths[i + 1], 3,
                                 stride=self.stem_spec.stride if i == 0 else 1, padding=1,
                                 bias=False),
                build_norm_layer(self.norm_cfg, widths[i + 1])[1],
                nn.ReLU(inplace=True)
            ]
        return nn.Sequential(*layers)

    def _max_pool(self, kernel_size: Size, stride: Size, padding: Size) -> nn.Module:
        return MAX_POOLS[self.dims](kernel_size=kernel_size, stride=stride, padding=padding)

    def _make_shortcut(self, in_channels: int, out_channels: int, stride: Size,
                       arch_stride: Size) -> Optional[nn.Module]:
        """The projection shortcut of a stage's first block, or ``None`` for identity.

        Index layout (state-dict keys) as in the authors' models: ``conv`` gives
        ``Sequential(conv1x1(stride), norm)``; ``pool`` gives ``Sequential(MaxPool(3, stride),
        conv1x1, norm)``, ``Sequential(conv1x1, norm)`` without a pool, or a bare pool when the
        channels do not change. The pool is kept wherever the *architectural* stride
        (``arch_stride``) is > 1, even where ``stride`` is set to 1 (SSD).
        """
        use_pool = self.shortcut == 'pool' and (is_strided(stride) or is_strided(arch_stride))
        if not is_strided(stride) and in_channels == out_channels and not use_pool:
            return None
        if self.avg_down:
            return nn.Sequential(self._avg_pool(stride),
                                 *self._projection(in_channels, out_channels, 1))
        pool = self._shortcut_pool(stride, arch_stride) if use_pool else None
        if in_channels == out_channels:
            return pool if pool is not None else self._projection(in_channels, out_channels, stride)
        if pool is not None:
            return nn.Sequential(pool, *self._projection(in_channels, out_channels, 1))
        return self._projection(in_channels, out_channels, stride)

    def _avg_pool(self, stride: Size) -> nn.Module:
        """mmdet's ``avg_down`` pool (kept at stride 1 too, so that its checkpoints' keys fit)."""
        pool = nn.AvgPool2d if self.dims == 2 else nn.AvgPool3d
        return pool(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False)

    def _shortcut_pool(self, stride: Size, arch_stride: Size) -> nn.Module:
        """The improved shortcut's max-pool: 3 wide along the strided dimensions, 1 along the
        others (``(1, 3, 3)`` where a clip keeps its time, ``(3, 3, 3)`` where time is strided)."""
        if isinstance(stride, int) and isinstance(arch_stride, int):
            return self._max_pool(3, stride, 1)
        strided = zip(_as_tuple(stride, self.dims), _as_tuple(arch_stride, self.dims))
        kernel = tuple(3 if s > 1 or a > 1 else 1 for s, a in strided)
        return self._max_pool(kernel, stride, tuple(k // 2 for k in kernel))

    def _projection(self, in_channels: int, out_channels: int, stride: Size) -> nn.Sequential:
        conv = build_conv_layer(
            self.conv_cfg, in_channels, out_channels, 1, stride=stride, bias=False)
        return nn.Sequential(conv, build_norm_layer(self.norm_cfg, out_channels)[1])

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def _freeze_stages(self) -> None:
        modules = []
        if self.frozen_stages >= 0:
            modules += [self.stem] if self.deep_stem else [self.conv1, self.norm1]
        modules += [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]
        for m in modules:
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        super().init_weights()
        pretrained = isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained'
        if pretrained:
            return
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualBlock) and m.placement.branch_norm:
                    constant_init(m.last_norm, 0)
        for m in self.modules():
            # the network's Kaiming init also reached the offset convs of DCN (v1) layers
            if isinstance(getattr(m, 'conv_offset', None), nn.Conv2d):
                constant_init(m.conv_offset, 0)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x) if self.deep_stem else self.relu(self.norm1(self.conv1(x)))
        if self.stem_pool:
            x = self.maxpool(x)
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = self._run_stage(getattr(self, layer_name), x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _run_stage(self, layer: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """Run a stage; with ``cp_blocks > 1``, one activation checkpoint per run of blocks."""
        if not (self.with_cp and self.cp_blocks > 1 and x.requires_grad):
            return layer(x)
        for start in range(0, len(layer), self.cp_blocks):
            x = cp.checkpoint(layer[start:start + self.cp_blocks], x, use_reentrant=False)
        return x

    def train(self, mode: bool = True):
        """Switch train/eval mode, keeping frozen stages and (with ``norm_eval``) norms in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


def _norm_cfg_for_dims(norm_cfg: dict, dims: int) -> dict:
    """``BN`` means the batch norm of the network's dimensionality (mmcv's ``BN`` is 2D)."""
    if dims == 3 and norm_cfg.get('type') in ('BN', 'BN2d'):
        return {**norm_cfg, 'type': 'BN3d'}
    return norm_cfg


def _check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise BackboneConfigError(f'unknown {name} {value!r}; choose one of {list(choices)}')


#: Checkpoint prefixes of mmdet's base configs (ResNet weights: they do not fit these networks).
RESNET_CHECKPOINT_PREFIXES = ('torchvision://', 'open-mmlab://', 'mmcls://')


def _arguments(names: dict) -> dict:
    """The constructor's arguments from its ``locals()`` (or a signature binding)."""
    return {k: v for k, v in names.items() if k not in ('self', '__class__')}


def _init_cfg(pretrained: Optional[str], init_cfg, dims: int, name: str):
    """The init config: mmdet's deprecated ``pretrained``, the given one, or the authors'."""
    if pretrained is not None:
        if init_cfg is not None:
            raise BackboneConfigError(
                'init_cfg and pretrained cannot both be set; drop pretrained and use '
                "init_cfg=dict(type='Pretrained', checkpoint=...)")
        if not isinstance(pretrained, str):
            raise BackboneConfigError(
                f'pretrained must be a checkpoint path (str) or None, got {pretrained!r}')
        warnings.warn('DeprecationWarning: pretrained is deprecated, please use "init_cfg" '
                      'instead')
        return dict(type='Pretrained', checkpoint=pretrained)
    if init_cfg is None:
        return [
            dict(type='Kaiming', layer=f'Conv{dims}d', mode='fan_out', nonlinearity='relu'),
            dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
        ]
    checkpoint = init_cfg.get('checkpoint') if isinstance(init_cfg, dict) else None
    if isinstance(checkpoint, str) and checkpoint.startswith(RESNET_CHECKPOINT_PREFIXES):
        warnings.warn(
            f'init_cfg loads {checkpoint}, the weights of another network (ResNet), into {name}: '
            'only the keys that happen to match would load. Set init_cfg=dict(type=\'Pretrained\', '
            "checkpoint='checkpoints/<name>.pth') with the authors' converted checkpoint "
            '(docs/converter.md), or init_cfg=None to train from scratch')
    return init_cfg


def _check_dcn(dcn: Optional[dict], stage_with_dcn: Sequence[bool], num_stages: int, block: str,
               dims: int, conv_cfg: Optional[dict]) -> None:
    if dcn is None:
        return
    if not isinstance(dcn, dict) or 'type' not in dcn:
        raise BackboneConfigError(
            f"dcn must be a conv config such as dict(type='DCNv2', deform_groups=1), got {dcn!r}")
    if len(stage_with_dcn) != num_stages:
        raise BackboneConfigError(
            f'stage_with_dcn needs one bool per stage ({num_stages}), got '
            f'{tuple(stage_with_dcn)}; e.g. '
            f'stage_with_dcn={(False, ) + (True, ) * (num_stages - 1)}')
    if block == 'basic':
        raise BackboneConfigError(
            'dcn replaces the 3x3 conv of bottleneck and ResGroup blocks; basic blocks (depths 18 '
            'and 34) have none (as in mmdet). Use depth >= 50 or dcn=None')
    if dims != 2 or conv_cfg is not None:
        raise BackboneConfigError('dcn works in 2D networks with conv_cfg=None only (mmcv\'s '
                                  'deformable convs are 2D)')


def with_dcn(convs: Sequence[ConvSpec], dcn: dict) -> List[ConvSpec]:
    """The convs with their 3x3 replaced by ``dcn`` (kept plain where strided and
    ``fallback_on_stride``)."""
    dcn = dict(dcn)
    fallback_on_stride = dcn.pop('fallback_on_stride', False)
    return [
        dataclasses.replace(spec, conv_cfg=dcn)
        if spec.kernel_size == 3 and not (fallback_on_stride and is_strided(spec.stride)) else spec
        for spec in convs
    ]


def _check_plugins(plugins: Optional[Sequence[dict]], num_stages: int, num_convs: int) -> None:
    """Check mmdet-style plugin entries: a ``cfg`` dict, a valid ``position``, ``stages``."""
    if plugins is None:
        return
    positions = plugin_positions(num_convs)
    for plugin in plugins:
        if not (isinstance(plugin, dict) and isinstance(plugin.get('cfg'), dict)
                and 'position' in plugin):
            raise BackboneConfigError(
                "each plugin must be dict(cfg=dict(type=...), position='after_conv2', "
                f'stages=...), got {plugin!r}')
        if plugin['position'] not in positions:
            raise BackboneConfigError(
                f"unknown plugin position {plugin['position']!r}; the blocks of this backbone "
                f'have {positions}')
        stages = plugin.get('stages')
        if stages is not None and len(stages) != num_stages:
            raise BackboneConfigError(
                f"plugin stages {tuple(stages)} needs one bool per stage ({num_stages})")


def stage_plugins(plugins: Optional[Sequence[dict]], stage: int) -> List[dict]:
    """The plugins of a stage (those whose ``stages`` is omitted or true at ``stage``)."""
    return [p for p in plugins or () if p.get('stages') is None or p['stages'][stage]]
