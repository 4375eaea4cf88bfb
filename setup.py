"""iresnet-mmdet: Improved Residual Networks (Duta et al., ICPR 2020) as MMDetection backbones.

Supported: Python >= 3.10, torch 2.1 to 2.13, mmengine 0.10, mmcv 2.1.0 with its ops, mmdet 3.3
(docs/install.md). mmcv is deliberately *not* in ``install_requires``: it has no PyPI wheel for
these torch versions and is either OpenMMLab's prebuilt wheel or compiled from source with
``--no-build-isolation``; if pip saw it as a dependency it would try to build it in an isolated
environment without torch, which fails. Install mmcv first (``make setup``, docs/install.md or
docs/gpu.md), then this package. torch stays below 2.14, whose headers no longer build mmcv 2.1.0.

The wheel carries the repository's ``configs/`` as ``iresnet_mmdet/.mim/configs`` (the place mmdet
keeps its own); ``python -m iresnet_mmdet.configs`` finds or copies them (docs/install.md).
"""
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))


def read_version():
    scope = {}
    with open(osp.join(ROOT, 'iresnet_mmdet', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


class BuildPyWithConfigs(build_py):
    """``build_py`` that also copies ``configs/`` into the built package as ``.mim/configs``.

    An editable install (``pip install -e .``) reads the repository's ``configs/`` directly.
    """

    def run(self):
        super().run()
        source = osp.join(ROOT, 'configs')
        if getattr(self, 'editable_mode', False) or not osp.isdir(source):
            return
        target = osp.join(self.build_lib, 'iresnet_mmdet', '.mim', 'configs')
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


setup(
    name='iresnet-mmdet',
    version=read_version(),
    description=('Improved Residual Networks (iResNet, iResGroup, ResStage, ...) as MMDetection '
                 'backbones'),
    long_description=open(osp.join(ROOT, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='MIT',
    license_files=['LICENSE'],
    python_requires='>=3.10',
    packages=find_packages(include=('iresnet_mmdet', 'iresnet_mmdet.*')),
    install_requires=['torch>=2.1,<2.14', 'mmengine>=0.10,<0.11', 'mmdet>=3.3,<3.4'],
    extras_require={
        # the twelve COCO figures: pycocotools (the reference), faster-coco-eval (the SSD300
        # configs' backend, several times faster)
        'eval': ['pycocotools', 'faster-coco-eval'],
        # ONNX export (torch >= 2.6) and onnxruntime inference
        'deploy': ['onnx>=1.17', 'onnxruntime>=1.20', 'onnxscript>=0.2'],
        'tests': ['pytest', 'psutil'],
    },
    cmdclass={'build_py': BuildPyWithConfigs},
    zip_safe=False,
)
