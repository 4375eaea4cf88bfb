"""Checks shared by the backbone test files."""
import torch

from mmdet.registry import MODELS


def assert_checkpointing_is_exact(cfg, input_shape, **cp_kwargs):
    """``with_cp`` (plus ``cp_kwargs``) gives bit-identical outputs and the same gradients.

    Args:
        cfg (dict): Backbone config without ``with_cp``.
        input_shape (tuple): Shape of the random input batch.
        **cp_kwargs: Further arguments of the checkpointed model (e.g. ``cp_blocks``).
    """
    torch.manual_seed(0)
    plain = MODELS.build(cfg)
    ckpt = MODELS.build({**cfg, 'with_cp': True, **cp_kwargs})
    ckpt.load_state_dict(plain.state_dict())
    results = []
    for model in (plain, ckpt):
        model.train()
        x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(3),
                        requires_grad=True)
        outs = model(x)
        sum((o**2).mean() for o in outs).backward()
        results.append((outs, x.grad, [p.grad for p in model.parameters()]))
    for out0, out1 in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(out0, out1, rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1])
    for g0, g1 in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(g0, g1)
