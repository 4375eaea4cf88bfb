"""Hooks of the plugin."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Run the model's convolutions in ``torch.channels_last`` memory format.

    Convolutions run faster on NHWC tensors: oneDNN on CPU (SSD300 trains about 20% faster) and
    cuDNN's tensor-core kernels on CUDA with AMP (SSD300 1.03-1.16x on an H200). Once the weights
    are channels-last, PyTorch's convolutions return channels-last outputs for the usual NCHW
    input batch, so the whole network runs NHWC without touching the data pipeline. Results are
    the same up to floating-point rounding; checkpoints store ordinary tensors.

    Use it with ``custom_hooks = [dict(type='ChannelsLastHook')]`` (CPU runs) or
    ``dict(type='ChannelsLastHook', devices=('cuda', ))`` (CUDA runs, as the SSD300 COCO configs
    do). It acts in ``before_run`` (training, validation and testing). A distributed run has
    wrapped the model in DDP by then, and converting the weights after DDP has laid out its
    gradient buckets gives wrong gradients in the first iteration (measured with torch 2.13,
    tests/test_channels_last_hook.py); so for a wrapped model the hook converts the data
    preprocessor's output batch instead, which makes the convolutions run channels-last all the
    same (they follow an NHWC input), with the weights and their gradients left NCHW.

    Args:
        on_cuda (bool): Also convert when the model is on a CUDA device (the same as
            ``devices=('cpu', 'cuda')``). Defaults to False.
        devices (Sequence[str], optional): The device types (``'cpu'``, ``'cuda'``) on which to
            convert. Defaults to ``('cpu', )``, or ``('cpu', 'cuda')`` with ``on_cuda``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, on_cuda=False, devices=None):
        if devices is None:
            devices = ('cpu', 'cuda') if on_cuda else ('cpu', )
        self.devices = tuple(devices)

    def before_run(self, runner):
        wrapped = is_model_wrapper(runner.model)
        model = runner.model.module if wrapped else runner.model
        first = next(model.parameters(), None)
        if first is None or first.device.type not in self.devices:
            return
        if not wrapped:
            to_channels_last(model)
            runner.logger.info('ChannelsLastHook: model weights converted to channels_last')
        elif not getattr(model.data_preprocessor, '_channels_last_inputs', False):
            model.data_preprocessor.register_forward_hook(_channels_last_inputs)
            model.data_preprocessor._channels_last_inputs = True
            runner.logger.info('ChannelsLastHook: input batches converted to channels_last (the '
                               'model is wrapped: its weights stay as they are)')


def _channels_last_inputs(module, args, output):
    """Forward hook of a data preprocessor: its 4-d ``inputs`` batch in channels-last format."""
    inputs = output.get('inputs') if isinstance(output, dict) else None
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        output['inputs'] = inputs.contiguous(memory_format=torch.channels_last)
    return output


def to_channels_last(model: torch.nn.Module) -> None:
    """Convert every 4-d parameter and buffer of ``model`` to channels-last, in place.

    Setting ``.data`` keeps the parameter objects, which an optimizer may already hold
    (``Module.to(memory_format=...)`` may replace them, depending on ``torch.__future__``).
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
