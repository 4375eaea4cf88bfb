"""ChannelsLastHook: which devices it converts on, and a DDP-wrapped model (gloo, CPU)."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from torch import nn

from iresnet_mmdet.engine import ChannelsLastHook


class Runner:
    """What the hook uses of mmengine's runner."""

    def __init__(self, model):
        self.model = model
        self.logger = MMLogger.get_instance('test_channels_last_hook')


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def channels_last(model):
    return all(p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters() if p.dim() == 4)


@pytest.mark.parametrize('kwargs, device, converts', [
    ({}, 'cpu', True),  # the demo's CPU hook, as before
    ({}, 'meta', False),
    (dict(devices=('cuda', )), 'cpu', False),  # the SSD300 COCO configs' hook on CPU
    (dict(devices=('meta', )), 'meta', True),  # a device list (CUDA's path, without a GPU)
    (dict(on_cuda=True), 'cpu', True),
])
def test_devices(kwargs, device, converts):
    hook = ChannelsLastHook(**kwargs)
    assert hook.devices == kwargs.get('devices', ('cpu', 'cuda') if kwargs.get('on_cuda') else
                                      ('cpu', ))
    runner = Runner(conv_net().to(device))
    hook.before_run(runner)
    assert channels_last(runner.model) == converts


def test_ssd300_coco_configs_convert_on_cuda_only():
    for config in ('configs/ssd300/ssd300_r50_8xb32-65e_coco.py',
                   'configs/ssd300/ssd300_iresgroup101_8xb32-65e_coco.py'):
        hooks = Config.fromfile(config).custom_hooks
        assert dict(type='ChannelsLastHook', devices=('cuda', )) in hooks
        assert {'NumClassCheckHook', 'CheckInvalidLossHook'} <= {h['type'] for h in hooks}
    demo = Config.fromfile('configs/demo/ssd300_iresnet18_synthetic.py').custom_hooks
    assert dict(type='ChannelsLastHook') in demo  # CPU, unchanged


class Detector(BaseModel):
    """A conv net as an mmengine model; records whether its input batches are channels-last."""

    def __init__(self):
        super().__init__()
        self.net = conv_net()
        self.channels_last_inputs = []

    def forward(self, inputs, data_samples=None, mode='loss'):
        self.channels_last_inputs.append(inputs.is_contiguous(memory_format=torch.channels_last)
                                         and not inputs.is_contiguous())
        return dict(loss=self.net(inputs).square().mean())


def batches(steps):
    for step in range(steps):
        yield dict(inputs=torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(step)))


@pytest.fixture
def process_group(tmp_path):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def test_converting_weights_inside_ddp_breaks_its_first_gradients(process_group):
    """Why the hook does not convert the weights of a DDP-wrapped model: DDP's gradient buckets,
    laid out for the old strides, give a wrong gradient in the first iteration."""
    from iresnet_mmdet.engine import CPUDistributedDataParallel
    from iresnet_mmdet.engine.hooks import to_channels_last
    reference = conv_net()
    ddp = CPUDistributedDataParallel(module=copy.deepcopy(reference))
    to_channels_last(ddp.module)
    x = next(batches(1))['inputs']
    for model in (reference, ddp):
        model(x).square().mean().backward()
    assert not torch.allclose(ddp.module[0].weight.grad, reference[0].weight.grad, atol=1e-4)


def test_ddp_wrapped_model_gets_channels_last_inputs(process_group):
    """Inside DDP the hook converts the input batches, not the weights: the convolutions run
    channels-last and training gives the reference's parameters (unwrapped, NCHW)."""
    from mmengine.optim import OptimWrapper

    from iresnet_mmdet.engine import CPUDistributedDataParallel
    reference = Detector()
    ddp = CPUDistributedDataParallel(module=copy.deepcopy(reference))
    hook = ChannelsLastHook()
    hook.before_run(Runner(ddp))
    hook.before_run(Runner(ddp))  # a second run (e.g. test after train) adds nothing
    assert len(ddp.module.data_preprocessor._forward_hooks) == 1
    assert not channels_last(ddp.module)  # the weights stay as DDP laid them out
    wrappers = [OptimWrapper(torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
                for m in (reference, ddp)]
    for data in batches(3):
        for model, wrapper in zip((reference, ddp), wrappers):
            model.train_step(copy.deepcopy(data), wrapper)
    assert ddp.module.channels_last_inputs == [True] * 3
    assert reference.channels_last_inputs == [False] * 3
    for got, expected in zip(ddp.module.parameters(), reference.parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
