"""Hooks of the plugin."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Store the model's 4-d weights in ``torch.channels_last`` memory format.

    On CPU, oneDNN convolutions run faster on NHWC tensors (SSD300 trains about 20% faster). Once
    the weights are channels-last, PyTorch's convolutions return channels-last outputs for the usual
    NCHW input batch, so the whole network runs NHWC without touching the data pipeline. Results
    are the same up to floating-point rounding; checkpoints store ordinary tensors.

    Use it with ``custom_hooks = [dict(type='ChannelsLastHook')]``. It acts in ``before_run``
    (training, validation and testing). In a distributed run the model is already wrapped by then;
    DDP still works but copies gradients between layouts, so the hook is meant for single-process
    CPU runs, and by default does nothing on CUDA devices (cuDNN picks its own layouts).

    Args:
        on_cuda (bool): Also convert when the model is on a CUDA device. Defaults to False.
    """

    priority = 'VERY_HIGH'

    def __init__(self, on_cuda=False):
        self.on_cuda = on_cuda

    def before_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        first = next(model.parameters(), None)
        if first is None or (first.device.type == 'cuda' and not self.on_cuda):
            return
        model.to(memory_format=torch.channels_last)
        runner.logger.info('ChannelsLastHook: model weights converted to channels_last')
