"""Inference with each BatchNorm folded into the convolution before it (``mmcv.cnn.fuse_conv_bn``).

``fuse_conv_bn`` pairs every BN with the conv registered just before it among a module's children,
whatever ``forward`` does. In a block whose BN normalises something else (a pre-activation BN, a BN
after the residual addition) the folding silently changes the outputs, so :func:`fuse_and_verify`
compares the fused model with the unfused one on a random image and refuses a mismatch.
"""
import copy
from typing import Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

#: Largest allowed ``max |fused - unfused| / max |unfused|`` over the model's raw outputs.
FUSE_TOLERANCE = 1e-4


class FuseConvBNError(RuntimeError):
    """Folding the BNs changed the model's outputs: its blocks are not fuse-safe."""


def flat_tensors(output) -> list:
    """The tensors of a (nested) model output, in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in flat_tensors(item)]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in flat_tensors(output[key])]
    return []


def relative_difference(output, reference) -> float:
    """``max |output - reference| / max |reference|`` over all tensors of two model outputs."""
    outs, refs = flat_tensors(output), flat_tensors(reference)
    if len(outs) != len(refs) or any(o.shape != r.shape for o, r in zip(outs, refs)):
        return float('inf')
    scale = max((r.detach().abs().max().item() for r in refs if r.numel()), default=0.0)
    diff = max(((o.detach().float() - r.detach().float()).abs().max().item()
                for o, r in zip(outs, refs) if r.numel()), default=0.0)
    return diff / scale if scale > 0 else diff


def raw_forward(model: torch.nn.Module, x: torch.Tensor):
    """The model's tensor outputs (:func:`~iresnet_mmdet.models.tensor_forward.tensor_forward`).

    For a two-stage detector: the features, the RPN head's outputs and the RoI head's outputs on
    fixed proposals (:func:`grid_proposals`). Its own proposals would not do: with random or
    barely trained weights, differences of 1e-7 reorder near-equal RPN scores and pick other
    boxes.
    """
    from ..models.tensor_forward import tensor_forward
    with torch.no_grad():
        return tensor_forward(model, x, grid_proposals)


def grid_proposals(x: torch.Tensor, cells: int = 4) -> list:
    """Per image of ``x``: ``cells`` x ``cells`` boxes of half the image size, on a grid."""
    from mmengine.structures import InstanceData
    height, width = x.shape[-2:]
    ys = torch.linspace(0, height / 2, cells, device=x.device)
    xs = torch.linspace(0, width / 2, cells, device=x.device)
    y1, x1 = (t.reshape(-1) for t in torch.meshgrid(ys, xs, indexing='ij'))
    boxes = torch.stack([x1, y1, x1 + width / 2, y1 + height / 2], dim=1)
    return [InstanceData(bboxes=boxes) for _ in range(len(x))]


def fuse_and_verify(model: torch.nn.Module, image_size: Tuple[int, int] = (320, 320),
                    tolerance: float = FUSE_TOLERANCE) -> float:
    """Fold the BNs of ``model`` (in eval mode) into their convs, in place, if that is exact.

    Args:
        model (nn.Module): A detector or backbone with its final (e.g. loaded) weights.
        image_size (tuple[int, int]): (H, W) of the random check image.
        tolerance (float): Largest allowed relative difference of the outputs.

    Returns:
        float: The relative difference of the fused outputs.

    Raises:
        FuseConvBNError: If the outputs change by more than ``tolerance``; ``model`` is then left
            unfused.
    """
    from mmcv.cnn import fuse_conv_bn
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.randn(1, 3, *image_size, generator=torch.Generator().manual_seed(0)).to(param.device)
    reference = raw_forward(model, x)
    fused = fuse_conv_bn(copy.deepcopy(model))
    diff = relative_difference(raw_forward(fused, x), reference)
    model.train(was_training)
    if not diff <= tolerance:
        raise FuseConvBNError(
            f'--fuse-conv-bn changes the outputs of this model (relative difference {diff:.2g} > '
            f'{tolerance:g}): some BN does not follow the conv registered before it '
            f'({type(getattr(model, "backbone", model)).__name__} is not fuse-safe); '
            'run without --fuse-conv-bn')
    fuse_conv_bn(model)
    return diff


@HOOKS.register_module()
class FuseConvBNHook(Hook):
    """Fold every BN into the conv before it before testing or standalone validation.

    It acts in ``before_test`` / ``before_val``, i.e. after the checkpoint is loaded, and checks
    the folding first (:func:`fuse_and_verify`). Only for inference: never use it while training.

    Args:
        image_size (Sequence[int]): (H, W) of the random check image. Defaults to (320, 320).
    """

    priority = 'ABOVE_NORMAL'  # before CompileHook, which compiles the fused modules

    def __init__(self, image_size: Sequence[int] = (320, 320)):
        self.image_size = tuple(image_size)
        self._done = False

    def before_val(self, runner) -> None:
        if getattr(runner, '_train_loop', None) is not None and not isinstance(
                runner._train_loop, dict):
            return  # validation during training: the model keeps training afterwards
        self._fuse(runner)

    def before_test(self, runner) -> None:
        self._fuse(runner)

    def _fuse(self, runner) -> None:
        if self._done:
            return
        self._done = True
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        diff = fuse_and_verify(model, self.image_size)
        runner.logger.info(f'FuseConvBNHook: BNs folded into their convs (outputs change by '
                           f'{diff:.1e} relative)')
