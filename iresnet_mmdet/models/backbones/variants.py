"""The named networks of the paper: thin presets of :class:`ResidualNetwork`.

The presets, their switches, depths and output channels are tabulated in docs/backbones.md (made by
``tools/analysis/backbones.py`` from :mod:`iresnet_mmdet.models.zoo`, the network catalogue).

Each preset takes every argument of :class:`ResidualNetwork`, which include all of mmdet's ``ResNet``
(``depth``, ``style``, ``deep_stem``, ``avg_down``, ``dcn``, ``stage_with_dcn``, ``plugins``,
``frozen_stages``, ``norm_eval``, ``with_cp``, ``pretrained``, ``init_cfg``, ...). The stem
max-pool follows the shortcut: only the conv shortcut keeps it.

The CIFAR and video presets change only the setting (the engine's ``default_*`` attributes):

* CIFAR (32x32 images): a 3x3 stride-1 stem conv with 16 channels and no max-pool, then three
  bottleneck stages of width 16/32/64 (outputs 64/128/256) with strides 1/2/2. The first stage has
  stride 1 even in iResNetCifar, so its first block keeps a plain 1x1 conv + norm projection; stages
  2 and 3 get the improved max-pool shortcut.
* Video (``(N, C, T, H, W)`` clips, e.g. 16x224x224): the ImageNet networks in 3D: 3x3x3 convs in
  the blocks (1x1x1 stay 1x1x1), a 5x7x7 stem conv with stride (1, 2, 2), a (1, 3, 3) stem max-pool
  with stride (1, 2, 2), and time strided only in stages 3 and 4 (16 frames -> 16, 16, 8, 4).
  iResNet3D has no stem max-pool (its first stage has stride (1, 2, 2)); its shortcut max-pools are
  3 wide only along the strided dimensions: (1, 3, 3) in stages 1-2, (3, 3, 3) in stages 3-4.
"""
from mmdet.registry import MODELS

from .residual_network import ResidualNetwork, StemSpec

RESNET_DEPTHS = ResidualNetwork.arch_settings
IRESNET_DEPTHS = {
    **RESNET_DEPTHS,
    302: ('bottleneck', (4, 34, 58, 4)),
    404: ('bottleneck', (4, 46, 80, 4)),
    1001: ('bottleneck', (4, 155, 170, 4)),
}
GROUP_DEPTHS = {depth: ('group', RESNET_DEPTHS[depth][1]) for depth in (50, 101, 152)}


@MODELS.register_module()
class PreActResNet(ResidualNetwork):
    """Pre-activation ResNet (He et al. 2016): norm-ReLU-conv blocks, final norm + ReLU."""
    default_layout = 'preact'


@MODELS.register_module()
class ResStage(ResidualNetwork):
    """ResNet with the paper's stage-based norm/ReLU placement (start, middle, end blocks)."""
    default_layout = 'stage'


@MODELS.register_module()
class iResNet(ResidualNetwork):
    """Improved ResNet: stage-based placement + improved shortcut, no stem max-pool.

    Strides are (2, 2, 2, 2): the max-pool of each stage's shortcut does the downsampling that the
    stem max-pool did in ResNet, so the output strides stay 4/8/16/32.
    """
    arch_settings = IRESNET_DEPTHS
    default_layout = 'stage'
    default_shortcut = 'pool'


@MODELS.register_module()
class ResGroup(ResidualNetwork):
    """ResNet with the ResGroup block: grouped 3x3 of width 256..2048, group width 32."""
    arch_settings = GROUP_DEPTHS


@MODELS.register_module()
class ResGroupFix(ResGroup):
    """ResGroup with a fixed number of groups (64) in every stage."""
    default_groups = (64, 64, 64, 64)


@MODELS.register_module()
class iResGroup(ResidualNetwork):
    """The ResGroup block inside the iResNet design."""
    arch_settings = GROUP_DEPTHS
    default_layout = 'stage'
    default_shortcut = 'pool'


@MODELS.register_module()
class iResGroupFix(iResGroup):
    """The ResGroupFix block (64 groups in every stage) inside the iResNet design."""
    default_groups = (64, 64, 64, 64)


#: Blocks per stage of the paper's CIFAR depths (9n + 2 layers; 3002 = 333 + 334 + 333 blocks).
CIFAR_DEPTHS = {
    164: ('bottleneck', (18, 18, 18)),
    1001: ('bottleneck', (111, 111, 111)),
    2000: ('bottleneck', (222, 222, 222)),
    3002: ('bottleneck', (333, 334, 333)),
}
#: 32x32 images: 3x3 stride-1 conv, no max-pool.
CIFAR_STEM = StemSpec(kernel_size=3, stride=1, padding=1, pool_kernel=None)
#: Clips (T, H, W): 5x7x7 conv, stride (1, 2, 2), then a (1, 3, 3) max-pool, stride (1, 2, 2).
VIDEO_STEM = StemSpec(kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3),
                      pool_kernel=(1, 3, 3), pool_stride=(1, 2, 2), pool_padding=(0, 1, 1))


class CifarSetting:
    """The CIFAR setting: stem, three stages, widths, strides, depths and 10 classes."""
    setting = 'cifar'
    arch_settings = CIFAR_DEPTHS
    default_stem = CIFAR_STEM
    default_strides = (1, 2, 2)
    default_base_channels = 16
    default_num_classes = 10


class VideoSetting:
    """The video setting: 3D convs, the 5x7x7 stem, time strided in stages 3-4, Kinetics-400."""
    setting = 'video'
    arch_settings = {50: RESNET_DEPTHS[50]}
    default_dims = 3
    default_stem = VIDEO_STEM
    default_strides = (1, (1, 2, 2), 2, 2)
    default_num_classes = 400


@MODELS.register_module()
class ResNetCifar(CifarSetting, ResidualNetwork):
    """The original (post-activation) bottleneck ResNet for CIFAR, 164 to 3002 layers."""


@MODELS.register_module()
class iResNetCifar(CifarSetting, ResidualNetwork):
    """iResNet for CIFAR (stage-based blocks + improved shortcut), 164 to 3002 layers."""
    default_layout = 'stage'
    default_shortcut = 'pool'


@MODELS.register_module()
class ResNet3D(VideoSetting, ResidualNetwork):
    """The 3D ResNet-50 baseline for video recognition (input ``(N, 3, T, H, W)``)."""


@MODELS.register_module()
class iResNet3D(VideoSetting, ResidualNetwork):
    """iResNet in 3D for video recognition (input ``(N, 3, T, H, W)``)."""
    default_layout = 'stage'
    default_shortcut = 'pool'
