from .residual_network import Placement, ResidualBlock, ResidualNetwork
from .variants import (PreActResNet, ResGroup, ResGroupFix, ResStage, iResGroup, iResGroupFix,
                       iResNet)

__all__ = [
    'Placement', 'ResidualBlock', 'ResidualNetwork', 'PreActResNet', 'ResStage', 'iResNet',
    'ResGroup', 'ResGroupFix', 'iResGroup', 'iResGroupFix'
]
