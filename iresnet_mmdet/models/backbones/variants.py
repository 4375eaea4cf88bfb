"""The named networks of the paper: thin presets of :class:`ResidualNetwork`.

=================  ==========  ========  ===============  =========  =========================
class              layout      shortcut  block            stem pool  depths
=================  ==========  ========  ===============  =========  =========================
``ResNet``         mmdet's own ``ResNet`` (identical to the authors' baseline)
``PreActResNet``   preact      conv      basic/bottleneck yes        18 ... 200
``ResStage``       stage       conv      basic/bottleneck yes        18 ... 200
``iResNet``        stage       pool      basic/bottleneck no         18 ... 200, 302, 404, 1001
``ResGroup``       resnet      conv      group            yes        50, 101, 152
``ResGroupFix``    resnet      conv      group, 64 groups yes        50, 101, 152
``iResGroup``      stage       pool      group            no         50, 101, 152
``iResGroupFix``   stage       pool      group, 64 groups no         50, 101, 152
=================  ==========  ========  ===============  =========  =========================

Each takes every argument of :class:`ResidualNetwork` (the mmdet ``ResNet`` contract: ``depth``,
``num_stages``, ``strides``, ``dilations``, ``out_indices``, ``frozen_stages``, ``norm_cfg``,
``norm_eval``, ``conv_cfg``, ``with_cp``, ``init_cfg``, ...). The stem max-pool follows the
shortcut: only the conv shortcut keeps it.
"""
from mmdet.registry import MODELS

from .residual_network import ResidualNetwork

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
