"""Complexity tool: the paper's params/GFLOPs columns, the counting rules, mmengine agreement."""
import functools
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet.analysis import complexity_rows, count_ops, markdown_table, model_complexity
from mmdet.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / 'ssd300'

# The paper's SSD300 table (COCO, 300x300): params (M), GFLOPs.
PAPER_SSD300 = {
    'ssd300_r50_8xb32-65e_coco.py': (22.89, 20.92),
    'ssd300_iresnet50_8xb32-65e_coco.py': (22.89, 20.99),
    'ssd300_iresgroupfix50_8xb32-65e_coco.py': (21.13, 18.61),
    'ssd300_iresgroup50_8xb32-65e_coco.py': (22.66, 21.62),
    'ssd300_r101_8xb32-65e_coco.py': (41.89, 48.45),
    'ssd300_iresnet101_8xb32-65e_coco.py': (41.89, 48.49),
    'ssd300_iresgroupfix101_8xb32-65e_coco.py': (41.55, 48.25),
    'ssd300_iresgroup101_8xb32-65e_coco.py': (45.58, 54.87),
}
# The paper's ImageNet GFLOPs at 224x224 (and params (M) where the notes confirm them).
PAPER_IMAGENET = {
    'resnet50': (25.56, 4.14), 'iresnet50': (25.56, 4.18), 'resgroupfix50': (23.37, 4.30),
    'resgroup50': (24.89, 5.43), 'iresgroupfix50': (23.37, 4.47), 'iresgroup50': (24.89, 5.60),
    'iresnet302': (96.59, 22.67), 'iresnet404': (124.5, 30.15),
}


@functools.lru_cache(maxsize=None)
def row(target, size):
    return complexity_rows([target], (3, size, size))[0]


def check_row(r, params_m, gflops):
    assert round(r['params'] / 1e6, 2 if params_m < 100 else 1) == params_m
    assert round(r['paper_flops'] / 1e9, 2) == gflops
    assert r['unused_params'] == 0 and r['uncounted'] == []


@pytest.mark.parametrize('config', sorted(PAPER_SSD300))
def test_ssd300_table_paper_convention(config):
    check_row(row(str(CONFIGS / config), 300), *PAPER_SSD300[config])


@pytest.mark.parametrize('arch', sorted(PAPER_IMAGENET))
def test_imagenet_table_paper_convention(arch):
    check_row(row(arch, 224), *PAPER_IMAGENET[arch])


class ImageNetForm(nn.Module):
    """mmdet's ResNet + global pool + fc: checks the counter independently of our backbones."""

    def __init__(self, depth=50):
        super().__init__()
        self.backbone = MODELS.build(dict(type='ResNet', depth=depth, out_indices=(3, )))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.backbone(x)[-1]), 1))


def test_mmdet_resnet50_exact_counts():
    """Exact integers (torchvision ResNet-50 under thop 2019 and plain MACs, computed by hand)."""
    with torch.device('meta'):  # shapes suffice: no memory, no compute
        model = ImageNetForm()
    paper = model_complexity(model, (3, 224, 224), 'paper')
    macs = model_complexity(model, (3, 224, 224), 'macs')
    assert paper['params'] == macs['params'] == 25_557_032
    assert paper['flops'] == 4_142_713_880 and round(paper['gflops'], 2) == 4.14
    assert macs['flops'] == 4_089_184_256
    assert paper['unit'] != macs['unit'] and 'MAC' in macs['unit']


class Toy(nn.Module):
    """One of each rule, and a ReLU module called twice (thop kept only the last call)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)  # 8x8 out
        self.conv_g = nn.Conv2d(4, 4, 1, groups=2, bias=False)  # 8x8 out
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2, 1)  # 4x4 out
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)
        self.drop = nn.Dropout()
        self.gelu = nn.GELU()  # no rule in either convention

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))  # ReLU call 1: 256 elements
        x = self.pool(self.conv_g(x))
        x = self.relu(x)  # ReLU call 2: 64 elements (the one the paper counts)
        x = self.relu(x)  # ReLU call 3: again 64 elements
        return self.fc(self.drop(torch.flatten(self.gap(self.gelu(x)), 1)))


def test_counting_rules():
    toy = Toy()
    counts = count_ops(toy, toy, torch.rand(1, 3, 8, 8))
    paper = counts['paper']['by_type']
    assert paper['Conv2d'] == 256 * (9 + 1) * 3 + 256 * 1 * 2  # bias charges Cin, groups divide
    assert paper['BatchNorm2d'] == 4 * 256
    assert paper['ReLU'] == 64  # last call only
    assert paper['MaxPool2d'] == 3 * 64  # int kernel 3 -> 3, not 9
    assert paper['AdaptiveAvgPool2d'] == (16 + 1) * 4
    assert paper['Linear'] == (2 * 4 - 1) * 5
    assert paper['Dropout'] == 0
    assert counts['paper']['uncounted'] == ['GELU'] == counts['macs']['uncounted']
    macs = counts['macs']['by_type']
    assert macs['Conv2d'] == 256 * 27 + 256 * 2 and macs['Linear'] == 20
    assert counts['macs']['total'] == 256 * 27 + 256 * 2 + 20
    assert counts['_unused_params'] == 0


def test_repeated_calls_macs_add_paper_keeps_last():
    conv = nn.Conv2d(2, 2, 1, bias=False)
    model = nn.Sequential(conv)
    counts = count_ops(model, lambda x: conv(conv(x)[:, :, :2, :2]), torch.rand(1, 2, 4, 4))
    assert counts['macs']['total'] == 16 * 4 + 4 * 4
    assert counts['paper']['total'] == 4 * 4


def test_macs_equal_mmengine_flop_analyzer():
    """The 'macs' convention is mmengine's conv + linear count, on a detector with our backbone."""
    from mmengine.analysis import FlopAnalyzer
    from iresnet_mmdet.analysis.complexity import build_from_config
    model = build_from_config(str(CONFIGS / 'ssd300_iresnet50_8xb32-65e_coco.py')).eval()
    x = torch.rand(1, 3, 300, 300)
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    by_op = analyzer.by_operator()
    expected = by_op['conv'] + by_op.get('linear', 0) + by_op.get('addmm', 0)
    assert model_complexity(model, (3, 300, 300), 'macs')['flops'] == expected
    assert round(expected / 1e9, 2) == 20.22  # ARCHITECTURE_NOTES 4.3, conv-only GMACs


def test_registered_backbone_config():
    """A backbone config dict counts alone: the SSD cut of iResNet-50 (ARCHITECTURE_NOTES 4.3)."""
    cut = dict(type='iResNet', depth=50, num_stages=3, strides=(2, 2, 1), out_indices=(2, ))
    res = model_complexity(cut, (3, 300, 300), 'macs')
    assert round(res['params'] / 1e6, 3) == 8.543 and res['unused_params'] == 0
    rows = complexity_rows([cut], (3, 300, 300))
    assert rows[0]['name'] == 'iResNet-50' and rows[0]['task'] == 'backbone'
    assert rows[0]['macs'] == res['flops'] and rows[0]['ref_gflops'] is None


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="'paper'"):
        model_complexity(nn.Linear(2, 2), (3, 8, 8), convention='flops')
    with pytest.raises(ValueError, match='input_shape'):
        model_complexity(nn.Conv2d(3, 3, 1), (300, 300))
    with pytest.raises(FileNotFoundError, match='not found'):
        model_complexity('configs/ssd300/no_such_config.py')


def test_table_and_cli(capsys):
    from importlib import util
    rows = [row(str(CONFIGS / 'ssd300_r50_8xb32-65e_coco.py'), 300), row('iresnet50', 224)]
    table = markdown_table(rows)
    assert 'GFLOPs (paper counter)' in table and 'GMACs (conv+linear)' in table
    assert '| SSD300 ResNet-50 | 300x300 | 22.89 | 20.92 | 20.15 | 22.89 | 20.92 |' in table
    assert '`ssd300_r50_8xb32-65e_coco.py` |' in table
    assert '| ImageNet iResNet-50 | 224x224 | 25.56 | 4.18 | 4.13 | 25.56 | 4.18 |' in table
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'analysis' / 'complexity.py'
    spec = util.spec_from_file_location('complexity_cli', tool)
    cli = util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(['resnet50', '--shape', '64']) == 0
    out = capsys.readouterr().out
    assert 'ResNet-50' in out and '[paper] GFLOPs (paper counter)' in out and '[macs] GMACs' in out
    assert cli.main(['no_such_config.py']) == 2
    assert 'error: Config file' in capsys.readouterr().err
