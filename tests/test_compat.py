"""What depends on the torch version (2.1 to 2.13) is detected, not assumed (docs/install.md).

Run by ``make test`` (torch 2.13) and ``make floor-test`` (torch 2.1.2): each checks its own side.
Safe checkpoint loading on both sides: tests/test_checkpoint_compat.py.
"""
import inspect
import os.path as osp
import subprocess
import sys

import torch
from tool_runs import assert_one_line_error, tool_env

import iresnet_mmdet  # noqa: F401
from iresnet_mmdet import checkpoint

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXPORT = osp.join(ROOT, 'tools', 'deployment', 'export_onnx.py')
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')
TORCH = tuple(int(v) for v in torch.__version__.split('+')[0].split('.')[:2])
# the exporter the deploy path uses: torch.export-based, with custom translations (torch 2.6)
HAS_EXPORTER = (hasattr(torch.library, 'custom_op')
                and 'custom_translation_table' in inspect.signature(torch.onnx.export).parameters)
# runs the export tool with the named modules made unimportable
WITHOUT = ("import runpy, sys\n"
           "for name in sys.argv[1].split(','):\n"
           "    sys.modules[name] = None\n"
           "sys.argv = sys.argv[2:]\n"
           "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def export_tool(tmp_path, *hidden):
    argv = [EXPORT, DEMO_CONFIG, str(tmp_path / 'missing.pth'), '--out', str(tmp_path / 'x.onnx')]
    return subprocess.run([sys.executable, '-c', WITHOUT, ','.join(hidden) or 'none', *argv],
                          capture_output=True, text=True, cwd=ROOT, env=tool_env())


def test_allowlist_path_follows_the_torch_version():
    # torch.load's allow-list takes (object, name) pairs from torch 2.6; before, ours is used
    assert checkpoint.TORCH_ALLOWLIST == (TORCH >= (2, 6))
    from mmengine.runner import CheckpointLoader
    local = CheckpointLoader._schemes['']
    assert (local is checkpoint._load_local_file) == (not checkpoint.TORCH_ALLOWLIST)


def test_export_names_what_this_environment_lacks(tmp_path):
    if HAS_EXPORTER:  # torch >= 2.6: without the [deploy] packages, one line naming them
        result = export_tool(tmp_path, 'onnx', 'onnxscript')
        assert_one_line_error(result, 'needs onnx, onnxscript', 'iresnet-mmdet[deploy]')
    else:  # older torch: one line naming the torch version needed, whatever is installed
        result = export_tool(tmp_path)
        assert_one_line_error(result, 'needs torch 2.6 or newer', torch.__version__)
    assert not (tmp_path / 'x.onnx').exists()
