"""iresnet-mmdet: Improved Residual Networks (Duta et al., ICPR 2020) as MMDetection backbones.

The OpenMMLab stack is deliberately *not* listed in ``install_requires``: mmcv 2.1.0 has no wheel on
PyPI for torch 2.13 and must be compiled from source with ``--no-build-isolation``. If pip saw it as a
dependency of a plain ``pip install .`` it would try to build it in an isolated environment without
torch, which fails. Install the stack first (``make setup`` or README "Without make"), then this
package.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'iresnet_mmdet', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='iresnet-mmdet',
    version=read_version(),
    description='Improved Residual Networks (iResNet, iResGroup, ResStage, ...) as MMDetection backbones',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.8',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'benchmarks')),
    install_requires=['pycocotools'],
    extras_require={
        'fast': ['faster-coco-eval'],
        'tests': ['pytest'],
        'deploy': ['onnx>=1.17', 'onnxruntime>=1.20', 'onnxscript>=0.2'],
    },
    zip_safe=False,
)
