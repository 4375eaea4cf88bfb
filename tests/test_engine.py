"""Safe checkpoint loading (iresnet_mmdet.checkpoint), the CPU DDP wrapper, channels_last hook."""
import io
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

import iresnet_mmdet  # noqa: F401  (registers the allow-list and the engine modules)
from iresnet_mmdet.checkpoint import history_buffer_getattr


class RunsCommand:
    """A pickle payload: unpickling it would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (['touch', self.marker], ))


class EvalsCode:
    """Unpickling it would create ``marker`` through ``eval``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f'open({self.marker!r}, "w").close()', ))


class ReachesInit:
    """Asks the allow-listed getattr stand-in for something other than a statistics method."""

    def __init__(self, marker):
        pass

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def _roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # torch's default: weights_only=True


def test_weights_only_is_not_switched_off():
    assert os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD') is None
    assert os.environ.get('TORCH_FORCE_WEIGHTS_ONLY_LOAD') is None


def test_mmengine_state_loads_with_weights_only():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_engine_hub')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('seed', np.int64(3))
    ckpt = {'meta': {'epoch': 2, 'dataset_meta': {'classes': ('a', 'b')}},
            'state_dict': {'w': torch.ones(2)}, 'message_hub': hub.state_dict(),
            'extra': [np.float64(0.25), np.arange(3, dtype=np.int32), np.array([True])]}
    loaded = _roundtrip(ckpt)
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 1.0
    assert loaded['message_hub']['runtime_info']['seed'] == 3
    assert loaded['extra'][1].tolist() == [0, 1, 2]


@pytest.mark.parametrize('payload', [RunsCommand, EvalsCode, ReachesInit],
                         ids=['subprocess.call', 'eval', 'getattr-other'])
def test_arbitrary_callables_are_still_refused(payload, tmp_path):
    if payload is not ReachesInit:  # the payload does run code when unpickled without torch
        pickle.loads(pickle.dumps(payload(tmp_path / 'PLAIN_PICKLE_RAN')))
        assert (tmp_path / 'PLAIN_PICKLE_RAN').exists()
    marker = tmp_path / 'CODE_RAN'
    with pytest.raises(pickle.UnpicklingError):
        _roundtrip({'state_dict': {}, 'payload': payload(marker)})
    assert not marker.exists()


def test_unreadable_checkpoints_name_the_cause_without_torchs_advice(tmp_path):
    from iresnet_mmdet.checkpoint import load_checkpoint
    from iresnet_mmdet.errors import ToolError, describe_error
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'random.pth').write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({'state_dict': {}, 'payload': RunsCommand(tmp_path / 'RAN')}, tmp_path / 'evil.pth')
    expected = {'empty.pth': 'the file is empty (0 bytes)',
                'random.pth': 'truncated, corrupt or not a PyTorch checkpoint (Unsupported operand',
                'evil.pth': 'call) that safe loading (torch.load weights_only=True) refuses'}
    for name, fragment in expected.items():
        with pytest.raises(ToolError) as error:
            load_checkpoint(str(tmp_path / name))
        assert fragment in str(error.value) and 'weights_only=False' not in str(error.value)
        assert 'will likely succeed' not in str(error.value)
    # the same for a refusal raised inside mmengine's runner (resume, load_from)
    with pytest.raises(pickle.UnpicklingError) as raw:
        torch.load(tmp_path / 'evil.pth')
    assert 'weights_only' in str(raw.value) and 'will likely succeed' in str(raw.value)
    message = describe_error(raw.value)
    assert 'call) that safe loading' in message and 'will likely succeed' not in message
    assert 'GLOBAL' not in message
    assert not (tmp_path / 'RAN').exists()


def test_getattr_stand_in_only_gives_statistics_methods():
    from mmengine.logging import HistoryBuffer
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__class__'), (os, 'system'), (HistoryBuffer, 'update')):
        with pytest.raises(pickle.UnpicklingError):
            history_buffer_getattr(obj, name)


def test_cpu_model_wrapper_cfg():
    from mmengine.config import Config

    from iresnet_mmdet.engine.dist import cpu_model_wrapper_cfg
    default = cpu_model_wrapper_cfg(Config(dict(find_unused_parameters=True)))
    assert default == dict(type='CPUDistributedDataParallel', broadcast_buffers=False,
                           find_unused_parameters=True)
    custom = cpu_model_wrapper_cfg(Config(dict(model_wrapper_cfg=dict(
        type='MMDistributedDataParallel', detect_anomalous_params=True))))
    assert custom == dict(type='CPUDistributedDataParallel', detect_anomalous_params=True)
    other = dict(type='MMFullyShardedDataParallel')
    assert cpu_model_wrapper_cfg(Config(dict(model_wrapper_cfg=other))) == other


def test_cpu_ddp_wrapper_drops_device_ids(tmp_path):
    import torch.distributed as dist
    from mmengine.model import BaseModel, is_model_wrapper
    from mmengine.registry import MODEL_WRAPPERS

    class Tiny(BaseModel):

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return self.fc(inputs)

    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0,
                            world_size=1)
    try:
        # exactly what mmengine's Runner.wrap_model passes for a DDP subclass
        wrapped = MODEL_WRAPPERS.build(dict(type='CPUDistributedDataParallel'),
                                       default_args=dict(module=Tiny(), device_ids=[0]))
        assert is_model_wrapper(wrapped)
        assert wrapped.device_ids is None
        out = wrapped(torch.ones(3, 2))
        out.sum().backward()
        assert wrapped.module.fc.weight.grad is not None
    finally:
        dist.destroy_process_group()


def test_channels_last_hook():
    from mmengine.logging import MMLogger

    from iresnet_mmdet.engine import ChannelsLastHook

    class FakeRunner:
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))
        logger = MMLogger.get_instance('test_channels_last')

    runner = FakeRunner()
    x = torch.randn(2, 3, 9, 9)
    before = runner.model.eval()(x)
    ChannelsLastHook().before_run(runner)
    for conv in (runner.model[0], runner.model[2]):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    after = runner.model(x)
    assert after.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before)


def test_setup_cpu_distributed_leaves_gpu_and_single_process_runs_alone(monkeypatch):
    from mmengine.config import Config

    from iresnet_mmdet.engine.dist import setup_cpu_distributed
    cfg = Config(dict(model_wrapper_cfg=None, env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert setup_cpu_distributed(cfg, 'none') is False
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert setup_cpu_distributed(cfg, 'pytorch') is False  # GPUs: mmengine's own NCCL path
    assert cfg.model_wrapper_cfg is None and cfg.env_cfg.dist_cfg.backend == 'nccl'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ValueError, match='--launcher pytorch'):
        setup_cpu_distributed(cfg, 'slurm')
