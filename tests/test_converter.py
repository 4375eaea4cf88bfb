"""The converter of the authors' ImageNet checkpoints (iresnet_official_to_mmdet.py).

Random weights are saved in the authors' layout (the ImageNet form, whose keys equal
``official_keys/``), converted and loaded; the loaded models must compute what the source computes.
"""
import importlib.util
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet import convert as cv
from iresnet_mmdet.models import build_classifier
from mmdet.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'model_converters' / 'iresnet_official_to_mmdet.py'
KEYS_DIR = Path(__file__).resolve().parent / 'data' / 'official_keys'
INPUT = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True, scope='module')
def fast_cpu():
    # Deep random networks produce denormal floats, which make CPU convs up to 20x slower; and the
    # tiny convs of 32x32 inputs run faster on one thread than on two busy-waiting ones.
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)


@pytest.fixture
def workdir():
    # Not tmp_path: pytest keeps the last runs' folders, and these files reach 500 MB each.
    with tempfile.TemporaryDirectory(prefix='iresnet-converter-') as folder:
        yield Path(folder)


def official_keys(arch):
    lines = (KEYS_DIR / f'{arch}_keys.txt').read_text().splitlines()
    return [(name, tuple(int(d) for d in re.findall(r'\d+', shape)))
            for name, shape in (line.split('\t') for line in lines)]


def random_source(arch, seed=1):
    """The ImageNet form of ``arch`` with every tensor random (norm statistics included)."""
    torch.manual_seed(seed)
    model = build_classifier(arch)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                t.fill_(int(torch.randint(1, 10**6, (1, ), generator=g)))
            elif t.dim() == 1 and name.endswith(('running_var', 'weight')):  # norm scales
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 1:  # norm biases and means, fc bias
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    model.eval()  # (mmdet's ResNet.train() returns None: no chaining)
    return model


def pooled_features(model, x=INPUT):
    """(features before the global pool, logits) of an ImageNet form."""
    feats = []
    handle = model.avgpool.register_forward_hook(lambda m, inp, out: feats.append(inp[0]))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return feats[0], logits


def run_tool(argv, capsys):
    """Run the command line tool in this process; returns (exit status, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location('iresnet_official_to_mmdet', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as exit_info:
        tool.run_main(lambda: tool.main([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


# ------------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------------


def test_key_lists_of_every_released_architecture_are_bundled():
    bundled = {p.name[:-len('_keys.txt')] for p in KEYS_DIR.glob('*_keys.txt')}
    assert set(cv.RELEASED_ARCHS) <= bundled
    assert len(cv.RELEASED_ARCHS) == 26



@pytest.mark.parametrize('arch', cv.RELEASED_ARCHS)
def test_round_trip_every_released_architecture(arch, workdir):
    """Bare state_dict -> (architecture inferred) -> backbone file: loads strictly, same output."""
    source = random_source(arch)
    state = source.state_dict()
    # the authors' exact layout: every key with its shape (the order of registration differs
    # where our blocks register a norm first so that conv-BN fusion stays correct)
    layout = [(k, tuple(v.shape)) for k, v in state.items()]
    assert dict(layout) == dict(official_keys(arch)) and len(layout) == len(official_keys(arch))
    torch.save(state, workdir / 'src.pth')
    report = cv.convert(workdir / 'src.pth', workdir / 'dst.pth')
    assert report.arch == arch
    assert report.dropped == ['fc.weight, fc.bias (the ImageNet classifier; --keep-fc keeps it)']

    torch.manual_seed(2)
    backbone = MODELS.build(cv.backbone_config(arch))
    backbone.eval()
    converted = torch.load(workdir / 'dst.pth', weights_only=True)
    assert converted['meta']['arch'] == arch and not converted['meta']['fc']
    backbone.load_state_dict(converted['state_dict'], strict=True)
    assert sorted(backbone.state_dict()) == sorted(k for k in state if not k.startswith('fc.'))
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    expected, _ = pooled_features(source)
    with torch.no_grad():
        features = backbone(INPUT)[-1]
    assert torch.isfinite(expected).all() and expected.std() > 0
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    assert report.num_params == sum(p.numel() for p in backbone.parameters())


@pytest.mark.parametrize('arch,legacy', [('iresnet50', True), ('iresgroupfix101', False),
                                         ('resstage50', False)])
def test_training_checkpoint_keep_fc_round_trip(arch, legacy, workdir):
    """The authors' main.py checkpoint (module. prefixes, optimizer ...) with --keep-fc: the
    ImageNet form loads it strictly and gives the source's logits."""
    source = random_source(arch)
    checkpoint = {
        'epoch': 90, 'arch': re.sub(r'\d+', '', arch),
        'state_dict': {f'module.{k}': v for k, v in source.state_dict().items()},
        'best_acc1': torch.tensor(77.31), 'val_acc1': torch.tensor(77.2),
        'optimizer': {'state': {0: {'momentum_buffer': torch.zeros(3)}},
                      'param_groups': [{'lr': 0.001, 'momentum': 0.9, 'params': [0]}]}}
    torch.save(checkpoint, workdir / 'model_best.pth.tar',
               _use_new_zipfile_serialization=not legacy)
    report = cv.convert(workdir / 'model_best.pth.tar', workdir / 'dst.pth', arch, keep_fc=True)
    summary = report.summary()
    assert 'checkpoint entries epoch, arch, best_acc1, val_acc1, optimizer' in summary
    assert f'prefix "module." of {len(source.state_dict())} keys' in summary

    saved = torch.load(workdir / 'dst.pth', weights_only=True)
    assert saved['meta']['arch'] == arch and saved['meta']['num_classes'] == 1000
    assert saved['meta']['source_arch_field'] == checkpoint['arch']
    torch.manual_seed(2)
    target = build_classifier(arch)
    target.eval()
    target.load_state_dict(saved['state_dict'], strict=True)
    expected_features, expected_logits = pooled_features(source)
    features, logits = pooled_features(target)
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=0)
    torch.testing.assert_close(features, expected_features, rtol=0, atol=0)


def test_inference_is_unambiguous_for_released_architectures(workdir, capsys):
    """No candidate shares the keys and shapes of a released architecture; the one ambiguous pair
    (2 blocks per stage: ResStage-18's blocks have ResNet-18's norms) asks for --arch. The
    references (built on the meta device) equal the authors' key lists."""
    groups = {}
    for arch in cv.candidate_archs():
        ref = cv.reference(arch)
        groups.setdefault(tuple(sorted(ref.shapes.items())) + (ref.feat_dim, ), []).append(arch)
    assert [archs for archs in groups.values() if len(archs) > 1] == [['resnet18', 'resstage18']]
    assert set(cv.RELEASED_ARCHS) <= set(cv.candidate_archs())
    for path in KEYS_DIR.glob('*_keys.txt'):
        arch = path.name[:-len('_keys.txt')]
        ref = cv.reference(arch)
        assert dict(official_keys(arch)) == {
            **ref.shapes, 'fc.weight': (1000, ref.feat_dim), 'fc.bias': (1000, )}
        assert len(official_keys(arch)) == len(ref.shapes) + 2

    torch.save({k: torch.zeros(s) for k, s in cv.reference('resnet18').shapes.items()},
               workdir / 'r18.pth')
    dst = workdir / 'dst.pth'
    assert_refused(capsys, [workdir / 'r18.pth', dst], dst,
                   'fits several architectures (resnet18, resstage18); choose one with --arch')
    code, out, _ = run_tool([workdir / 'r18.pth', '--dry-run', '--arch', 'resstage18'], capsys)
    assert code == 0 and "dict(type='ResStage', depth=18)" in out and 'nothing (dry run)' in out


def test_missing_batch_counters_are_added(workdir):
    """An older file without num_batches_tracked still converts; the counters are added (0)."""
    state = {k: v for k, v in random_source('iresnet50').state_dict().items()
             if not k.endswith('num_batches_tracked')}
    torch.save(state, workdir / 'old.pth')
    report = cv.convert(workdir / 'old.pth', workdir / 'dst.pth', 'iresnet50')
    assert len(report.added) == 53 == len(report.state_dict) - (len(state) - 2)  # 53 norms; fc
    assert 'added:         53 num_batches_tracked' in report.summary()
    load_checkpoint(MODELS.build(dict(type='iResNet', depth=50)), str(workdir / 'dst.pth'),
                    strict=True)


# ------------------------------------------------------------------------------------------------
# Use in a detector
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('config,arch', [('ssd300_iresnet50_8xb32-65e_coco.py', 'iresnet50'),
                                         ('ssd300_r50_8xb32-65e_coco.py', 'resnet50')])
def test_pretrained_init_cfg_in_ssd_config(config, arch, workdir, capsys):
    """init_cfg=dict(type='Pretrained', checkpoint=converted) in an SSD300 config: the cut backbone
    (no layer4) holds exactly the converted weights after init_weights()."""
    source = random_source(arch)
    torch.save(source.state_dict(), workdir / f'{arch}_imagenet.pth')
    code, _, err = run_tool([workdir / f'{arch}_imagenet.pth', workdir / f'{arch}.pth'], capsys)
    assert code == 0, err
    converted = torch.load(workdir / f'{arch}.pth', weights_only=True)['state_dict']

    cfg = Config.fromfile(str(ROOT / 'configs' / 'ssd300' / config))
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    cfg.model.backbone.init_cfg.checkpoint = str(workdir / f'{arch}.pth')
    init_default_scope(cfg.default_scope)
    torch.manual_seed(3)
    detector = MODELS.build(cfg.model)
    backbone = detector.backbone.state_dict()
    assert not any(k.startswith('layer4') for k in backbone)
    assert not torch.equal(backbone['layer3.0.conv2.weight'], converted['layer3.0.conv2.weight'])
    detector.init_weights()
    backbone = detector.backbone.state_dict()
    for key, value in backbone.items():
        assert torch.equal(value, converted[key]), key
    assert len(backbone) == len([k for k in converted if not k.startswith('layer4')])


# ------------------------------------------------------------------------------------------------
# Errors: one line, exit status 2, nothing written
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def iresnet50_file():
    with tempfile.TemporaryDirectory(prefix='iresnet-converter-') as folder:
        path = Path(folder) / 'iresnet50.pth'
        torch.save(random_source('iresnet50').state_dict(), path)
        yield path


def assert_refused(capsys, argv, dst, *fragments):
    dst.write_bytes(b'previous output')
    code, out, err = run_tool(argv, capsys)
    assert code == 2 and out == ''
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert dst.read_bytes() == b'previous output'  # untouched
    assert [p.name for p in dst.parent.iterdir()
            if p.name.startswith('.')] == []  # no temporary file left behind
    return lines[0]


def test_wrong_arch_names_first_mismatching_keys(iresnet50_file, workdir, capsys):
    dst = workdir / 'dst.pth'
    assert_refused(capsys, [iresnet50_file, dst, '--arch', 'iresgroup50'], dst,
                   'does not fit --arch iresgroup50', 'shape mismatches',
                   'layer1.0.conv1.weight (64, 64, 1, 1) in the file vs (256, 64, 1, 1)',
                   'The file fits iresnet50: use --arch iresnet50')
    assert_refused(capsys, [iresnet50_file, dst, '--arch', 'resnet50'], dst,
                   'keys missing from the file (first: layer1.0.downsample.0.weight',
                   'unexpected keys in the file (first: layer1.0.downsample.2.weight')
    assert_refused(capsys, [iresnet50_file, dst, '--arch', 'iresnet5O'], dst,
                   "unknown architecture 'iresnet5o'", 'Released architectures: resnet50')


def test_missing_keys(iresnet50_file, workdir, capsys):
    state = torch.load(iresnet50_file, weights_only=True)
    del state['layer2.1.conv2.weight'], state['fc.bias']
    torch.save(state, workdir / 'partial.pth')
    dst = workdir / 'dst.pth'
    assert_refused(capsys, [workdir / 'partial.pth', dst, '--arch', 'iresnet50'], dst,
                   '1 keys missing from the file (first: layer2.1.conv2.weight)')
    assert_refused(capsys, [workdir / 'partial.pth', dst], dst,
                   'fits no known architecture exactly. Closest: iresnet50: 1 keys missing')
    backbone_only = {k: v for k, v in torch.load(iresnet50_file, weights_only=True).items()
                     if not k.startswith('fc.')}
    torch.save(backbone_only, workdir / 'backbone.pth')
    assert_refused(capsys, [workdir / 'backbone.pth', dst, '--keep-fc'], dst,
                   'fits iresnet50 but has no fc layer to keep')


def test_truncated_and_corrupt_files(iresnet50_file, workdir, capsys):
    data = iresnet50_file.read_bytes()
    (workdir / 'truncated.pth').write_bytes(data[:len(data) // 2])
    buffer = workdir / 'legacy.pth'
    torch.save({'a': torch.zeros(3)}, buffer, _use_new_zipfile_serialization=False)
    (workdir / 'truncated_legacy.pth').write_bytes(buffer.read_bytes()[:100])
    (workdir / 'text.pth').write_text('<html>Google Drive: virus scan warning</html>\n')
    dst = workdir / 'dst.pth'
    for name in ('truncated.pth', 'truncated_legacy.pth', 'text.pth'):
        assert_refused(capsys, [workdir / name, dst], dst, f'cannot read {workdir / name}',
                       'truncated, corrupt or not a PyTorch checkpoint')
    assert_refused(capsys, [workdir / 'missing.pth', dst], dst,
                   f"source checkpoint '{workdir / 'missing.pth'}' does not exist")


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker, ))


@pytest.mark.parametrize('writer', ['torch.save', 'pickle4'])
def test_pickle_that_carries_code_is_refused_not_run(writer, workdir, capsys):
    marker = workdir / 'CODE_RAN'
    payload = {'state_dict': {'conv1.weight': torch.zeros(1)}, 'x': _Payload(marker)}
    src = workdir / 'evil.pth'
    if writer == 'torch.save':
        torch.save(payload, src)
    else:
        with open(src, 'wb') as f:
            pickle.dump(payload, f, protocol=4)
    dst = workdir / 'dst.pth'
    assert_refused(capsys, [src, dst], dst, f'refusing {src}', 'os.makedirs',
                   'nothing in it was executed')
    assert not marker.exists()


def test_cli_subprocess(iresnet50_file, workdir):
    """The script itself: exit 0 with the summary; a bad input gives one line and exit 2."""
    dst = workdir / 'out' / 'iresnet50.pth'
    done = subprocess.run([sys.executable, str(TOOL), str(iresnet50_file), str(dst)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert 'architecture:  iresnet50' in done.stdout
    assert 'tensors:       318' in done.stdout and 'parameters:    23,508,032' in done.stdout
    assert 'dropped:       fc.weight, fc.bias' in done.stdout
    assert dst.exists()
    done = subprocess.run([sys.executable, str(TOOL), str(iresnet50_file), str(dst) + '2',
                           '--arch', 'iresnet101'], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    assert done.stderr.startswith('error: ') and len(done.stderr.strip().splitlines()) == 1
    assert not Path(str(dst) + '2').exists()


def test_not_a_model_state_dict(workdir, capsys):
    dst = workdir / 'dst.pth'
    torch.save({'weight': torch.zeros(3), 'bias': torch.zeros(3)}, workdir / 'other.pth')
    assert_refused(capsys, [workdir / 'other.pth', dst], dst,
                   "has none of the keys of the authors' models", 'its keys begin: weight, bias')
    torch.save({'state_dict': {'conv1.weight': torch.zeros(3), 'step': 3}}, workdir / 'mixed.pth')
    assert_refused(capsys, [workdir / 'mixed.pth', dst], dst,
                   'is not a state_dict: it has entries that are not tensors: step')
    torch.save([torch.zeros(3)], workdir / 'list.pth')
    assert_refused(capsys, [workdir / 'list.pth', dst], dst, 'holds a list, not a state_dict')
    torch.save({'conv1.weight': torch.zeros(3), 'module.conv1.weight': torch.zeros(3)},
               workdir / 'twice.pth')
    assert_refused(capsys, [workdir / 'twice.pth', dst], dst,
                   "has the key 'conv1.weight' both with and without the \"module.\" prefix")
    code, _, err = run_tool([workdir / 'other.pth', workdir], capsys)
    assert code == 2 and 'is a folder; give a file name' in err
