"""Importing the package registers every module of the plugin in mmdet's/mmengine's registries."""
import re

import iresnet_mmdet
from mmdet.registry import HOOKS, METRICS, MODEL_WRAPPERS, MODELS

BACKBONES = ['ResidualNetwork', 'PreActResNet', 'ResStage', 'iResNet', 'ResGroup', 'ResGroupFix',
             'iResGroup', 'iResGroupFix', 'ResNetCifar', 'iResNetCifar', 'ResNet3D', 'iResNet3D']


def test_version():
    assert re.fullmatch(r'\d+\.\d+\.\d+', iresnet_mmdet.__version__)


def test_import_registers_every_plugin_module():
    for name in BACKBONES + ['FixedSSDHead']:
        cls = MODELS.get(name)
        assert cls is not None and cls.__module__.startswith('iresnet_mmdet'), name
    assert METRICS.get('CocoTableMetric').__module__.startswith('iresnet_mmdet')
    assert HOOKS.get('ChannelsLastHook').__module__.startswith('iresnet_mmdet')
    assert MODEL_WRAPPERS.get('CPUDistributedDataParallel').__module__.startswith('iresnet_mmdet')


def test_baseline_resnet_is_mmdets_own():
    # The paper's ResNet rows use mmdet's ResNet, which the plugin must not re-register.
    assert MODELS.get('ResNet').__module__.startswith('mmdet.')
