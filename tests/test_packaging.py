"""The wheel: the package with its configs, usable without the repository (docs/install.md).

The wheel is built from a copy of the files the source distribution holds (MANIFEST.in), installed
with ``--no-deps`` into a throwaway directory, and used from a directory outside the checkout: the
shipped configs are found, copied and inherited from by a config of one's own, and mmengine reads
them (``mmdet::`` bases from the installed mmdet, relative bases inside the copy).
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SOURCES = ('setup.py', 'README.md', 'LICENSE', 'MANIFEST.in', 'iresnet_mmdet', 'configs',
           'requirements')
SSD = 'ssd300/ssd300_iresnet50_8xb32-65e_coco.py'


def run(argv, cwd, **env):
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd,
                            env=dict(os.environ, PYTHONWARNINGS='ignore', **env))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ''


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(site directory, a working directory outside the checkout)."""
    work = tmp_path_factory.mktemp('packaging')
    source = work / 'source'
    for name in SOURCES:
        src, dst = osp.join(ROOT, name), source / name
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            os.makedirs(source, exist_ok=True)
            shutil.copy(src, dst)
    pip = ['-m', 'pip', '--disable-pip-version-check', '-q']
    run(pip + ['wheel', '--no-deps', '--no-build-isolation', '-w', str(work / 'dist'),
               str(source)], cwd=work)
    wheel, = (work / 'dist').glob('iresnet_mmdet-*.whl')
    run(pip + ['install', '--no-deps', '--no-compile', '--target', str(work / 'site'),
               str(wheel)], cwd=work)
    elsewhere = work / 'elsewhere'
    elsewhere.mkdir()
    return work / 'site', elsewhere


def test_wheel_holds_every_config(installed):
    site, _ = installed
    shipped = site / 'iresnet_mmdet' / '.mim' / 'configs'
    expected = sorted(osp.relpath(osp.join(d, f), osp.join(ROOT, 'configs'))
                      for d, _, files in os.walk(osp.join(ROOT, 'configs'))
                      for f in files if f.endswith('.py'))
    found = sorted(osp.relpath(osp.join(d, f), shipped) for d, _, files in os.walk(shipped)
                   for f in files if f.endswith('.py'))
    assert found == expected


def test_configs_found_copied_and_inherited_outside_the_checkout(installed):
    site, elsewhere = installed
    env = dict(PYTHONPATH=str(site))
    path = run(['-m', 'iresnet_mmdet.configs', SSD], elsewhere, **env)
    assert path == str(site / 'iresnet_mmdet' / '.mim' / 'configs' / SSD)
    # the documented way to inherit: a copy of the tree next to one's own configs
    mine = f"_base_ = './iresnet/{SSD}'\nmodel = dict(bbox_head=dict(num_classes=3))\n"
    script = ('import json, iresnet_mmdet\n'
              'from iresnet_mmdet.configs import main\n'
              'from mmengine.config import Config\n'
              'main(["--copy", "my_configs/iresnet"])\n'
              f'open("my_configs/my_ssd.py", "w").write({mine!r})\n'
              f'configs = [Config.fromfile(name) for name in ({path!r}, "my_configs/my_ssd.py")]\n'
              'print(json.dumps([iresnet_mmdet.__file__] + [[c.model.backbone.type,\n'
              '    c.model.bbox_head.num_classes, c.custom_imports.imports] for c in configs]))\n')
    package, shipped, mine = json.loads(run(['-c', script], elsewhere, **env))
    assert package.startswith(str(site))  # the wheel's package, not the checkout's
    assert shipped == ['iResNet', 80, ['iresnet_mmdet']]
    assert mine == ['iResNet', 3, ['iresnet_mmdet']]


def pinned(path, package):
    with open(osp.join(ROOT, path)) as f:
        return re.search(rf'^{package}==(\S+)', f.read(), re.M).group(1)


def test_declared_range_holds_both_tested_stacks():
    """setup.py's floors and caps admit exactly what make setup and make floor-test install."""
    from packaging.specifiers import SpecifierSet
    with open(osp.join(ROOT, 'setup.py')) as f:
        text = f.read()
    requires = dict(re.findall(r"'(torch|mmengine|mmdet)([<>=!,.\d]+)'", text))
    for requirements in ('requirements/build.txt', 'requirements/floor.txt'):
        assert pinned(requirements, 'torch') in SpecifierSet(requires['torch'])
    assert '2.14.0' not in SpecifierSet(requires['torch'])  # cannot build mmcv 2.1.0
    for package in ('mmengine', 'mmdet'):
        assert pinned('requirements/mminstall.txt', package) in SpecifierSet(requires[package])
    python = SpecifierSet(re.search(r"python_requires='([^']+)'", text).group(1))
    with open(osp.join(ROOT, 'tools', 'bootstrap.sh')) as f:
        floor_python = re.search(r'floor\)\n(?:.*\n)*?.*PYTHON:-python([\d.]+)', f.read()).group(1)
    assert f'{floor_python}.0' in python and '3.9.0' not in python
