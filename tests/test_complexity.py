"""Complexity tool: the paper's params/GFLOPs columns, the counting rules, mmengine agreement."""
import functools
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import iresnet_mmdet  # noqa: F401
import mmdet
from iresnet_mmdet import paper
from iresnet_mmdet.analysis import complexity_rows, count_ops, markdown_table, model_complexity
from iresnet_mmdet.analysis.report import detector_table
from iresnet_mmdet.errors import ToolError
from mmdet.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / 'ssd300'
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'

# The config of each row of the paper's SSD300 table.
SSD300_CONFIGS = {
    'ResNet-50': 'ssd300_r50_8xb32-65e_coco.py',
    'iResNet-50': 'ssd300_iresnet50_8xb32-65e_coco.py',
    'iResGroupFix-50': 'ssd300_iresgroupfix50_8xb32-65e_coco.py',
    'iResGroup-50': 'ssd300_iresgroup50_8xb32-65e_coco.py',
    'ResNet-101': 'ssd300_r101_8xb32-65e_coco.py',
    'iResNet-101': 'ssd300_iresnet101_8xb32-65e_coco.py',
    'iResGroupFix-101': 'ssd300_iresgroupfix101_8xb32-65e_coco.py',
    'iResGroup-101': 'ssd300_iresgroup101_8xb32-65e_coco.py',
}
# Every ImageNet network of the paper that the project builds (ResNeXt is mmdet's, not ours).
IMAGENET = {name: (arch, ref) for name, ref in paper.imagenet_complexity().items()
            if not name.startswith('ResNeXt')
            for arch in [name.lower().replace('-', '')]}
# The paper prints the ResNet baseline's GFLOPs for the pre-activation and ResStage networks
# from 101 layers on; both are cheaper by one BN/ReLU per stage (a few tens of MFLOPs).
BASELINE_GFLOPS_PRINTED = {f'{family}-{depth}' for family in ('PreActResNet', 'ResStage')
                           for depth in (101, 152, 200)}


@functools.lru_cache(maxsize=None)
def row(target, size):
    return complexity_rows([target], (3, size, size))[0]


def check_row(r, params_m, gflops):
    assert paper.matches(r['params'] / 1e6, params_m)
    assert paper.matches(r['paper_flops'] / 1e9, gflops)
    assert r['unused_params'] == 0 and r['uncounted'] == []


def test_ssd300_configs_cover_the_paper_table():
    assert list(SSD300_CONFIGS) == list(paper.SSD300_COCO)


@pytest.mark.parametrize('name', sorted(SSD300_CONFIGS))
def test_ssd300_table_paper_convention(name):
    published = paper.SSD300_COCO[name]
    check_row(row(str(CONFIGS / SSD300_CONFIGS[name]), 300), published.params, published.gflops)


@pytest.mark.parametrize('name', sorted(set(IMAGENET) - BASELINE_GFLOPS_PRINTED))
def test_imagenet_table_paper_convention(name):
    arch, (params_m, gflops) = IMAGENET[name]
    check_row(row(arch, 224), params_m, gflops)


@pytest.mark.parametrize('name', sorted(BASELINE_GFLOPS_PRINTED))
def test_imagenet_rows_printed_with_the_baseline_gflops(name):
    arch, (params_m, gflops) = IMAGENET[name]
    baseline = paper.IMAGENET_DEPTH['ResNet-' + name.split('-')[1]].gflops
    r = row(arch, 224)
    assert paper.matches(r['params'] / 1e6, params_m) and gflops == baseline
    assert 0 < baseline - r['paper_flops'] / 1e9 <= 0.03


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
    from iresnet_mmdet.analysis.building import build_from_config
    model = build_from_config(str(CONFIGS / 'ssd300_iresnet50_8xb32-65e_coco.py')).eval()
    x = torch.rand(1, 3, 300, 300)
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    by_op = analyzer.by_operator()
    expected = by_op['conv'] + by_op.get('linear', 0) + by_op.get('addmm', 0)
    assert model_complexity(model, (3, 300, 300), 'macs')['flops'] == expected
    assert round(expected / 1e9, 2) == 20.22  # conv-only GMACs (docs/complexity.md)


def test_registered_backbone_config():
    """A backbone config dict counts alone: the SSD cut of iResNet-50."""
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
    with pytest.raises(ToolError, match="config file 'configs/ssd300/no_such_config.py' does not "
                       'exist'):
        model_complexity('configs/ssd300/no_such_config.py')


def test_table_and_cli(capsys):
    from importlib import util
    rows = [row(str(CONFIGS / 'ssd300_r50_8xb32-65e_coco.py'), 300), row('iresnet50', 224),
            row('iresnet404', 224)]
    table = markdown_table(rows)
    assert 'GFLOPs (paper counter)' in table and 'GMACs (conv+linear)' in table
    r50, i50 = paper.SSD300_COCO['ResNet-50'], paper.IMAGENET_DEPTH['iResNet-50']
    assert (f'| SSD300 ResNet-50 | 300x300 | 22.89 | 20.92 | 20.15 | {r50.params} | {r50.gflops} '
            '| `ssd300_r50_8xb32-65e_coco.py` |') in table
    assert (f'| ImageNet iResNet-50 | 224x224 | 25.56 | 4.18 | 4.13 | {i50.params} | {i50.gflops} '
            '| `iresnet50` |') in table
    i404 = paper.IMAGENET_EXTREME_DEPTH['iResNet-404']
    # the paper's cells as printed (124.5), ours at two decimals
    assert f'| ImageNet iResNet-404 | 224x224 | 124.52 | 30.15 | 29.89 | {i404.params} |' in table
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'analysis' / 'complexity.py'
    spec = util.spec_from_file_location('complexity_cli', tool)
    cli = util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(['resnet50', '--shape', '64']) == 0
    out = capsys.readouterr().out
    assert 'ResNet-50' in out and '[paper] GFLOPs (paper counter)' in out and '[macs] GMACs' in out
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(lambda: cli.main(['no_such_config.py']))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: config file 'no_such_config.py' does not exist\n"


def test_cli_bad_configs_are_one_error_line(tmp_path, capsys):
    cli = load_cli()
    (tmp_path / 'syntax.py').write_text('model = dict(type=(\n')
    (tmp_path / 'binary.py').write_bytes(bytes(range(128, 256)))
    (tmp_path / 'empty.py').write_text('')
    for name, message in (('syntax.py', 'has a syntax error'), ('binary.py', 'is not UTF-8 text'),
                          ('empty.py', 'defines no model')):
        with pytest.raises(SystemExit) as exit_info:
            cli.run_main(lambda: cli.main([str(tmp_path / name)]))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith('error: ') and message in err, err
        assert len(err.splitlines()) == 1


def load_cli():
    from importlib import util
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'analysis' / 'complexity.py'
    spec = util.spec_from_file_location('complexity_cli', tool)
    cli = util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_cli_fpn_tables_and_detector_options(monkeypatch, capsys):
    cli = load_cli()
    retinanet = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
    monkeypatch.setattr(cli, 'fpn_configs', lambda: [retinanet])
    assert cli.main(['--tables', 'fpn']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == ('| RetinaNet | ResNet-50 | 1280x800 | 37.97 | 238.54 | '
                        '`mmdet::retinanet/retinanet_r50_fpn_1x_coco.py` |')
    assert lines[3] == '' and lines[4] == cli.LEGEND['fpn'] and len(lines) == 5
    assert cli.main(['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '--shape', '320', '480',
                     '--num-proposals', '10', '--convention', 'macs']) == 0
    out = capsys.readouterr().out
    assert 'ResNet-50, input (3, 320, 480)' in out and '[macs] GMACs' in out
    for bad in (['--tables', 'fpn', 'resnet50'], ['--tables', 'nope'],
                ['resnet50', '--num-proposals', '0'], ['iresnet50', '--num-classes', '0']):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(bad)
        assert exit_info.value.code == 2
    assert 'error:' in capsys.readouterr().err


def test_cli_fpn_rows_order():
    cli = load_cli()
    configs = ['configs/mask_rcnn/mask-rcnn_iresnet50_fpn_1x_coco.py',
               'configs/faster_rcnn/faster-rcnn_iresnet50-dconv-c3-c5_fpn_1x_coco.py',
               'configs/faster_rcnn/faster-rcnn_iresgroup101_fpn_1x_coco.py',
               'configs/faster_rcnn/faster-rcnn_iresnet50_fpn_1x_coco.py',
               'configs/retinanet/retinanet_iresnet50_fpn_1x_coco.py']
    assert sorted(configs + [c for kind in cli.FPN_DETECTORS for c in cli.MMDET_BASELINES[kind]],
                  key=cli.fpn_rank) == [
        'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        'configs/faster_rcnn/faster-rcnn_iresnet50_fpn_1x_coco.py',
        'mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
        'configs/faster_rcnn/faster-rcnn_iresgroup101_fpn_1x_coco.py',
        'mmdet::dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py',
        'configs/faster_rcnn/faster-rcnn_iresnet50-dconv-c3-c5_fpn_1x_coco.py',
        'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
        'configs/retinanet/retinanet_iresnet50_fpn_1x_coco.py',
        'mmdet::retinanet/retinanet_r101_fpn_1x_coco.py',
        'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
        'configs/mask_rcnn/mask-rcnn_iresnet50_fpn_1x_coco.py',
        'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py']


def small_two_stage(name, max_per_img):
    """An mmdet two-stage config on a ResNet-18 (cheap), with a given proposal budget."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(MMDET_CONFIGS / name))
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.test_cfg.rpn.update(nms_pre=100, max_per_img=max_per_img)
    return cfg


def test_two_stage_macs_equal_flop_analyzer_in_tensor_mode():
    """Mask R-CNN in mmdet's mode='tensor' (RPN proposals from the image, RoIAlign, bbox and mask
    heads) under mmengine's FlopAnalyzer, as mmdet's get_flops.py runs it: our count with the same
    number of proposals gives the same conv + linear MACs."""
    from mmengine.analysis import FlopAnalyzer
    from iresnet_mmdet.analysis.building import build_from_config
    from iresnet_mmdet.models.tensor_forward import image_sample
    torch.manual_seed(0)
    model = build_from_config(small_two_stage('mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 12)).eval()
    x = torch.rand(1, 3, 160, 224)
    proposals = []
    roi_forward = model.roi_head.forward
    model.roi_head.forward = lambda feats, props, samples: (
        proposals.append(len(props[0])) or roi_forward(feats, props, samples))

    class TensorMode(nn.Module):

        def __init__(self):
            super().__init__()
            self.detector = model

        def forward(self, x):
            return self.detector(x, [image_sample(x)], mode='tensor')

    analyzer = FlopAnalyzer(TensorMode(), (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    by_op = analyzer.by_operator()
    del model.roi_head.forward
    assert 0 < proposals[0] <= 12
    ours = model_complexity(model, (3, 160, 224), 'macs', num_proposals=proposals[0])
    assert ours['flops'] == by_op['conv'] + by_op['linear']  # conv includes the mask deconv
    assert ours['unused_params'] == 0 and ours['uncounted'] == []


def test_two_stage_meta_count_equals_cpu_count():
    """On the meta device RoI extractors only give their output shape: the same totals."""
    from iresnet_mmdet.analysis.building import build_from_config
    cfg = small_two_stage('mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 7)
    cpu = build_from_config(cfg)
    with torch.device('meta'):
        meta = build_from_config(cfg)
    for convention in ('macs', 'paper'):
        assert (model_complexity(meta, (3, 128, 160), convention)['flops'] ==
                model_complexity(cpu, (3, 128, 160), convention)['flops'])
    # the RPN's max_per_img is the default number of proposals; mask head on at most 100 RoIs
    one = model_complexity(meta, (3, 128, 160), 'macs', num_proposals=1)['flops']
    two = model_complexity(meta, (3, 128, 160), 'macs', num_proposals=2)['flops']
    seven = model_complexity(meta, (3, 128, 160), 'macs')['flops']
    assert seven - one == 6 * (two - one)


class DeformStage(nn.Module):

    def __init__(self, modulated):
        super().__init__()
        from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack
        pack = ModulatedDeformConv2dPack if modulated else DeformConv2dPack
        self.dcn = pack(8, 16, 3, stride=2, padding=1, groups=2, bias=False)

    def forward(self, x):
        return self.dcn(x)


@pytest.mark.parametrize('modulated', [False, True])
def test_deformable_conv_counts_as_its_conv_plus_offsets(modulated):
    model = DeformStage(modulated)
    out = 16 * 8 * 8  # 16x16 input, stride 2
    offsets = (27 if modulated else 18) * 8 * 8  # (x, y[, mask]) per kernel position
    expected = out * 4 * 9 + offsets * 8 * 9  # groups=2: 4 input channels per output
    cpu = model_complexity(model, (8, 16, 16), 'macs')
    assert cpu['flops'] == expected and cpu['unused_params'] == 0
    with torch.device('meta'):
        meta = DeformStage(modulated)
    with _shape_only(meta):
        assert model_complexity(meta, (8, 16, 16), 'macs')['flops'] == expected


def _shape_only(model):
    from iresnet_mmdet.analysis.building import shape_only_compiled_ops
    return shape_only_compiled_ops(model)


def test_fpn_detectors_default_to_mmdet_get_flops_input():
    configs = [MMDET_CONFIGS / 'retinanet' / 'retinanet_r50_fpn_1x_coco.py',
               MMDET_CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50_fpn_1x_coco.py']
    rows = complexity_rows([str(c) for c in configs])
    assert [(r['detector'], r['name'], r['task'], r['input_shape'], r['ref_gflops'])
            for r in rows] == [('RetinaNet', 'ResNet-50', 'detector', (3, 1280, 800), None),
                               ('Faster R-CNN', 'ResNet-50', 'detector', (3, 1280, 800), None)]
    table = detector_table(rows)
    assert table.splitlines()[0] == ('| Detector | Backbone | Input | Params (M) | '
                                     'GMACs (conv+linear) | Config |')
    # mmdet 2.x's model zoo (get_flops, 1280x800): RetinaNet 37.74 M; 80-class head here
    assert table.splitlines()[2].startswith('| RetinaNet | ResNet-50 | 1280x800 | 37.97 | 238.')
    assert '| Faster R-CNN | ResNet-50 | 1280x800 | 41.75 |' in table
