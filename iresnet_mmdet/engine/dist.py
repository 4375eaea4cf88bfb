"""Multi-process training and testing on CPU (gloo) with mmengine's ``launcher='pytorch'``.

mmengine 0.10.7 assumes CUDA for ``--launcher pytorch``: ``init_dist`` calls
``torch.cuda.set_device(LOCAL_RANK)`` (which fails on a CPU-only torch), the default backend is
NCCL, and the runner builds ``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``, which torch
refuses for a module on CPU. :func:`setup_cpu_distributed` handles this *only when CUDA is not
available*; on GPUs nothing changes and mmengine's own NCCL path runs:

* it creates the default process group with the gloo backend itself, so that the runner's
  ``setup_env`` finds an initialised group and skips ``init_dist``;
* it sets ``model_wrapper_cfg`` to :class:`CPUDistributedDataParallel`, the same wrapper as
  mmengine's without CUDA ``device_ids``.
"""
import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

_MMENGINE_DDP = 'MMDistributedDataParallel'


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also accepts a module on CPU.

    mmengine's runner always passes ``device_ids=[LOCAL_RANK]`` to a wrapper derived from
    ``DistributedDataParallel``; torch requires ``device_ids=None`` for CPU modules. This wrapper
    drops ``device_ids`` and ``output_device`` when the module's parameters are on CPU and is
    otherwise identical to ``MMDistributedDataParallel``.

    Args:
        module (torch.nn.Module): The model to wrap.
        device_ids (list[int], optional): CUDA devices; ignored for a CPU module.
        **kwargs: Other arguments of ``MMDistributedDataParallel``.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if _on_cpu(module):
            device_ids = None
            kwargs.pop('output_device', None)
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def _on_cpu(module):
    tensors = list(module.parameters()) + list(module.buffers())
    return all(t.device.type == 'cpu' for t in tensors)


def setup_cpu_distributed(cfg, launcher):
    """Prepare a CPU multi-process run; do nothing on GPUs or in a single process.

    Call it after setting ``cfg.launcher`` and before building the runner.

    Args:
        cfg (mmengine.Config): The run's config; ``model_wrapper_cfg`` and ``env_cfg.dist_cfg`` are
            updated in place for CPU runs.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Returns:
        bool: Whether a CPU (gloo) process group was set up.

    Raises:
        ValueError: For a CPU run with a launcher other than ``pytorch``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise ValueError(f"multi-process runs on CPU support --launcher pytorch (torchrun), "
                         f"not {launcher!r}")
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        raise ValueError('--launcher pytorch needs the environment of torchrun (RANK, WORLD_SIZE, '
                         'MASTER_ADDR, ...): start it with tools/dist_train.sh / dist_test.sh or '
                         'torchrun --nproc_per_node N')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = datetime.timedelta(seconds=dist_cfg.get('timeout', 1800))
        torch_dist.init_process_group(backend='gloo', timeout=timeout)
    cfg.model_wrapper_cfg = cpu_model_wrapper_cfg(cfg)
    return True


def cpu_model_wrapper_cfg(cfg):
    """The CPU form of the config's model wrapper (mmengine's defaults when it has none).

    Args:
        cfg (mmengine.Config): The run's config.

    Returns:
        dict: ``model_wrapper_cfg`` for a CPU run.
    """
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:  # what the runner builds by default, minus device_ids
        return dict(type='CPUDistributedDataParallel', broadcast_buffers=False,
                    find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper = dict(wrapper)
    if wrapper.get('type', _MMENGINE_DDP) in (_MMENGINE_DDP, 'mmengine.' + _MMENGINE_DDP):
        wrapper['type'] = 'CPUDistributedDataParallel'
    return wrapper
