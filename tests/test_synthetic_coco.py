"""The bundled synthetic COCO dataset generator (tools/data/make_synthetic_coco.py)."""
import hashlib
import json
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'tools', 'data', 'make_synthetic_coco.py')
ARGS = ['--num-train', '12', '--num-val', '4', '--image-size', '160', '--max-objects', '6']


def make(out, *extra):
    return subprocess.run([sys.executable, SCRIPT, '--out', str(out), *ARGS, *extra],
                          capture_output=True, text=True, check=True)


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic')
    make(out)
    return out


def test_layout_and_coco_format(dataset):
    from iresnet_mmdet.evaluation.coco_eval import load_gt
    from pycocotools.coco import COCO
    for split, num in (('train', 12), ('val', 4)):
        ann_file = dataset / 'annotations' / f'instances_{split}.json'
        coco_dict = load_gt(str(ann_file))  # the project's strict COCO validation
        assert len(coco_dict['images']) == num
        assert [c['name'] for c in coco_dict['categories']] == [
            'circle', 'square', 'triangle', 'cross', 'ring']
        coco = COCO(str(ann_file))
        assert len(coco.getImgIds()) == num
        for image in coco_dict['images']:
            path = dataset / split / image['file_name']
            assert path.read_bytes()[:2] == b'\xff\xd8', 'not a JPEG file'
            assert (image['width'], image['height']) == (160, 160)
        for ann in coco_dict['annotations']:
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and x + w <= 160 and y + h <= 160
            assert ann['area'] == w * h and ann['iscrowd'] == 0


def test_objects_cover_small_medium_large(tmp_path):
    # at the default 320-pixel size the three COCO area ranges are all present
    out = tmp_path / 'sizes'
    subprocess.run([sys.executable, SCRIPT, '--out', str(out), '--num-train', '30',
                    '--num-val', '1'], check=True, capture_output=True)
    anns = json.loads((out / 'annotations' / 'instances_train.json').read_text())['annotations']
    areas = [a['area'] for a in anns]
    assert any(a < 32**2 for a in areas)
    assert any(32**2 <= a < 96**2 for a in areas)
    assert any(a >= 96**2 for a in areas)
    assert len({a['category_id'] for a in anns}) == 5


def test_deterministic_and_written_once(dataset, tmp_path):
    other = tmp_path / 'again'
    make(other)
    for rel in ('annotations/instances_train.json', 'annotations/instances_val.json',
                'train/000000.jpg', 'val/000003.jpg'):
        assert digest(dataset / rel) == digest(other / rel), rel
    again = make(other)
    assert 'already' in again.stdout
    changed = make(other, '--seed', '1')  # other arguments: rewritten
    assert 'written' in changed.stdout
    assert digest(dataset / 'train/000000.jpg') != digest(other / 'train/000000.jpg')


def test_rejects_bad_arguments(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, '--out', str(tmp_path), '--image-size', '8'],
                            capture_output=True, text=True)
    assert result.returncode != 0 and '--image-size' in result.stderr
