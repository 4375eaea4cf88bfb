"""Checks shared by the backbone test files."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from iresnet_mmdet.models.backbones.residual_network import ResidualBlock
from mmdet.registry import MODELS


class _Probe:
    """Instruments a backbone for one forward and one backward pass.

    * ``recomputed``: for every residual block, how often its first conv ran during
      ``backward()`` (activation checkpointing recomputes each checkpointed block once there).
    * ``saved_bytes``: bytes of the distinct storages that autograd keeps for the backward pass
      (``saved_tensors_hooks`` see every tensor saved outside a checkpoint; a checkpoint keeps its
      input and saves nothing else).
    * ``outside_bytes``: the part of ``saved_bytes`` saved outside the residual blocks (stem).
    * ``block_input_bytes``: bytes of each block's input.
    """

    def __init__(self, model):
        self.blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
        self.in_backward = False
        self.depth = 0  # > 0 while a residual block runs its forward
        self.recomputed = [0] * len(self.blocks)
        self.block_input_bytes = [0] * len(self.blocks)
        self.storages = {}
        self.outside = {}
        for i, block in enumerate(self.blocks):
            block.register_forward_pre_hook(self._entering(i))
            block.register_forward_hook(self._leaving)
            block.conv1.register_forward_hook(self._conv_ran(i))

    def _entering(self, i):
        def hook(module, args):
            if not self.in_backward:
                self.block_input_bytes[i] = args[0].untyped_storage().nbytes()
            self.depth += 1
        return hook

    def _leaving(self, module, args, output):
        self.depth -= 1

    def _conv_ran(self, i):
        def hook(module, args, output):
            self.recomputed[i] += self.in_backward
        return hook

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        if self.depth == 0:
            self.outside[storage.data_ptr()] = storage.nbytes()
        return tensor

    def run(self, model, x):
        """Forward (saved tensors recorded), then ``backward()`` of a loss of every output."""
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            outs = model(x)
        self.saved_bytes = sum(self.storages.values())
        self.outside_bytes = sum(self.outside.values())
        self.in_backward = True
        sum((o**2).mean() for o in outs).backward()
        self.in_backward = False
        return outs


def _stages(model):
    return [m for name, m in model.named_children()
            if name.startswith('layer') and isinstance(m, nn.Sequential)]


def assert_checkpointing_works(cfg, input_shape, cp_blocks=1):
    """``with_cp`` (with ``cp_blocks``) recomputes every block in the backward pass, keeps only
    the input of each checkpointed run of blocks, and gives the same outputs and gradients.

    Args:
        cfg (dict): Backbone config without ``with_cp``.
        input_shape (tuple): Shape of the random input batch.
        cp_blocks (int): Blocks per checkpoint of the checkpointed model.
    """
    torch.manual_seed(0)
    plain = MODELS.build(cfg)
    extra = {} if cp_blocks == 1 else dict(cp_blocks=cp_blocks)
    ckpt = MODELS.build({**cfg, 'with_cp': True, **extra})
    ckpt.load_state_dict(plain.state_dict())
    runs = []
    for model in (plain, ckpt):
        model.train()
        probe = _Probe(model)
        x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(3),
                        requires_grad=True)
        outs = probe.run(model, x)
        runs.append((probe, outs, x.grad, [p.grad for p in model.parameters()]))
    (plain_probe, *plain_results), (cp_probe, *cp_results) = runs

    # Recomputation: no block runs again in the plain backward; every block exactly once with_cp.
    assert plain_probe.recomputed == [0] * len(plain_probe.blocks)
    assert cp_probe.recomputed == [1] * len(cp_probe.blocks), 'blocks recomputed in backward()'

    # Memory: only the stem's tensors and the input of each checkpointed run of blocks are kept
    # (the first block's input may be a stem tensor already counted, hence <= on the right).
    run_starts = {id(block) for stage in _stages(ckpt) for block in list(stage)[::cp_blocks]}
    kept_inputs = sum(n for block, n in zip(cp_probe.blocks, cp_probe.block_input_bytes)
                      if id(block) in run_starts)
    saved = (cp_probe.saved_bytes, plain_probe.saved_bytes)
    assert kept_inputs <= cp_probe.saved_bytes, saved
    assert cp_probe.saved_bytes <= plain_probe.outside_bytes + kept_inputs, saved
    assert cp_probe.saved_bytes < plain_probe.saved_bytes / 2, saved

    # Same numbers: outputs bit-identical, gradients equal.
    for out0, out1 in zip(plain_results[0], cp_results[0]):
        torch.testing.assert_close(out0, out1, rtol=0, atol=0)
    torch.testing.assert_close(plain_results[1], cp_results[1])
    for g0, g1 in zip(plain_results[2], cp_results[2]):
        torch.testing.assert_close(g0, g1)


def per_group_conv(x, weight, groups, stride=1):
    """Independent reference of a grouped 3x3 conv (padding 1): one dense conv per group, the
    outputs concatenated."""
    return torch.cat([F.conv2d(a, b, stride=stride, padding=1)
                      for a, b in zip(x.chunk(groups, 1), weight.chunk(groups, 0))], dim=1)
