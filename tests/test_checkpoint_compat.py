"""Safe checkpoint loading on every supported torch (2.1 to 2.13): the same allow-list either way.

torch >= 2.6 enforces it with ``torch.load(weights_only=True)`` and ``add_safe_globals``; older
torch through :class:`iresnet_mmdet.checkpoint.AllowListUnpickler`, which this file also tests on
new torch. The payloads run code when unpickled without an allow-list (checked with plain pickle);
loading them must fail before any of it runs. This file is part of ``make floor-test``.
"""
import io
import os.path as osp
import pickle
import subprocess
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import iresnet_mmdet  # noqa: F401  (registers the allow-list and mmengine's safe local loader)
from iresnet_mmdet import checkpoint


class RunsCommand:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (['touch', self.marker], ))


class EvalsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()", ))


class ReachesInit:
    """Asks the getattr stand-in for something other than a HistoryBuffer statistic."""

    def __init__(self, marker):
        pass

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def mmengine_checkpoint():
    """What an mmengine checkpoint holds: weights, meta, optimizer state, the MessageHub."""
    hub = MessageHub.get_instance('test_checkpoint_compat')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('best_score', np.float64(0.25))
    return {
        'meta': {'epoch': 2, 'seed': np.int64(3), 'dataset_meta': {'classes': ('a', 'b')}},
        'state_dict': OrderedDict(w=torch.arange(4.), b=torch.ones(2, dtype=torch.int64)),
        'optimizer': {'state': {0: {'momentum_buffer': torch.zeros(4)}},
                      'param_groups': [{'lr': 0.01, 'params': [0]}]},
        'message_hub': hub.state_dict(),
        'extra': [np.arange(3, dtype=np.int32), np.array([True]), np.float32(2.5)],
    }


def check_loaded(loaded):
    assert loaded['meta']['epoch'] == 2 and loaded['meta']['seed'] == 3
    assert torch.equal(loaded['state_dict']['w'], torch.arange(4.))
    assert isinstance(loaded['state_dict'], OrderedDict)
    assert loaded['optimizer']['param_groups'][0]['lr'] == 0.01
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 1.0
    assert loaded['message_hub']['runtime_info']['best_score'] == 0.25
    assert loaded['extra'][0].tolist() == [0, 1, 2] and loaded['extra'][2] == np.float32(2.5)


def save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return str(path)


# torch's own weights_only path exists with the allow-list from torch 2.6 on
LOADERS = {'allowlist_unpickler': checkpoint.allowlist_load}
if checkpoint.TORCH_ALLOWLIST:
    LOADERS['weights_only'] = lambda f, map_location=None: torch.load(
        f, map_location=map_location, weights_only=True)
LOADERS['mmengine'] = lambda f, map_location=None: __import__(
    'mmengine.runner', fromlist=['CheckpointLoader']).CheckpointLoader.load_checkpoint(
        f, map_location=map_location, logger='silent')
PAYLOADS = {'subprocess.call': RunsCommand, 'eval': EvalsCode, 'getattr-other': ReachesInit}


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy-format'])
@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_mmengine_checkpoint_loads(loader, legacy, tmp_path):
    check_loaded(LOADERS[loader](save(mmengine_checkpoint(), tmp_path / 'a.pth', legacy), 'cpu'))


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy-format'])
@pytest.mark.parametrize('payload', sorted(PAYLOADS))
@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_payloads_are_refused_before_running(loader, payload, legacy, tmp_path):
    marker = tmp_path / 'CODE_RAN'
    obj = PAYLOADS[payload](marker)
    if payload != 'getattr-other':  # without an allow-list the payload does run
        pickle.loads(pickle.dumps(obj))
        assert osp.exists(marker)
        marker.unlink()
    path = save({'state_dict': {'w': torch.ones(1)}, 'x': obj}, tmp_path / 'evil.pth', legacy)
    with pytest.raises(pickle.UnpicklingError):
        LOADERS[loader](path, 'cpu')
    assert not osp.exists(marker)


def test_refusal_names_the_global_for_the_tools(tmp_path):
    from iresnet_mmdet.errors import ToolError
    path = save({'x': RunsCommand(tmp_path / 'CODE_RAN')}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError) as refused:
        checkpoint.allowlist_load(path)
    # pickle's protocol 2 spells subprocess as Python 2's "commands"; torch names it so
    names = checkpoint.unsafe_globals(str(refused.value))
    assert len(names) == 1 and names[0] in ('subprocess.call', 'commands.call')
    with pytest.raises(ToolError, match=r'\(\w+\.call\).*nothing in it was executed'):
        checkpoint.load_checkpoint(path)


def test_file_objects_load_too():
    buffer = io.BytesIO()
    torch.save(mmengine_checkpoint(), buffer)
    buffer.seek(0)
    check_loaded(checkpoint.safe_torch_load(buffer))


def test_unknown_globals_of_numpy_are_refused(tmp_path):
    # the allow-list holds numpy's array and scalar reconstruction, not numpy as a whole
    path = save({'x': np.load}, tmp_path / 'np.pth')
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.allowlist_load(path)
