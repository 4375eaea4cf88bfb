from .residual_network import (BackboneConfigError, Placement, ResidualBlock, ResidualNetwork,
                               StemSpec)
from .variants import (PreActResNet, ResGroup, ResGroupFix, ResNet3D, ResNetCifar, ResStage,
                       iResGroup, iResGroupFix, iResNet, iResNet3D, iResNetCifar)

__all__ = [
    'BackboneConfigError', 'Placement', 'ResidualBlock', 'ResidualNetwork', 'StemSpec',
    'PreActResNet', 'ResStage', 'iResNet', 'ResGroup', 'ResGroupFix', 'iResGroup', 'iResGroupFix',
    'ResNetCifar', 'iResNetCifar', 'ResNet3D', 'iResNet3D'
]
