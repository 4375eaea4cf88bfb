"""A collate function that makes handing a batch from a DataLoader worker to the main process cheap.

mmengine's ``pseudo_collate`` keeps every tensor of a batch separate: an SSD batch of 32 images
carries about 100 tensors (image, boxes, labels of each sample). PyTorch sends each tensor storage
between processes on its own: with the default ``file_descriptor`` sharing, the main process
fetches each file descriptor from the worker (a socket round trip that waits for the busy worker),
about 0.6 ms of the main process's time per image on a 2-core AMD EPYC, 1.5 ms on a slower Xeon:
the main process, not the workers, then caps the loader (about 650 img/s there, whatever the
number of workers).

:func:`packed_pseudo_collate` gives the same batch, but in a worker it writes the tensors of one
dtype into one block of shared memory and replaces each by a view of that block, with PyTorch's
``file_system`` sharing in the worker: the main process then maps one block per dtype and the
other views come from PyTorch's cache, instead of one storage per tensor. Values, shapes and
dtypes are unchanged; without workers it is ``pseudo_collate``.

Use it in a config's DataLoader: ``collate_fn=dict(type='packed_pseudo_collate')``.
"""
import torch
import torch.multiprocessing
from mmdet.structures.bbox import BaseBoxes
from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS
from mmengine.structures import BaseDataElement
from torch.utils.data import get_worker_info


def _tensor_slots(batch):
    """``(container, key)`` of every tensor of a pseudo-collated batch: the inputs, and each
    tensor or box tensor of the data samples' fields (``gt_instances``, ``ignored_instances``,
    ...), one level deep as mmdet's PackDetInputs writes them."""
    slots = []
    for key, value in batch.items():
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, torch.Tensor):
                slots.append((value, index) if isinstance(value, list) else (batch, key))
            elif isinstance(item, BaseDataElement):
                slots.extend(_element_slots(item))
    return slots


def _element_slots(element):
    slots = []
    for key, value in element.items():
        if isinstance(value, torch.Tensor):
            slots.append((element, key))
        elif isinstance(value, BaseBoxes):
            slots.append((value, 'tensor'))
        elif isinstance(value, BaseDataElement):
            slots.extend(_element_slots(value))
    return slots


def _get(container, key):
    return container[key] if isinstance(container, (list, dict)) else getattr(container, key)


def _set(container, key, value):
    if isinstance(container, (list, dict)):
        container[key] = value
    else:
        setattr(container, key, value)


def pack_tensors(slots):
    """Move the tensors at ``slots`` into one new shared-memory block per dtype, as views."""
    groups = {}
    for container, key in slots:
        tensor = _get(container, key)
        if tensor.device.type == 'cpu':
            groups.setdefault(tensor.dtype, []).append((container, key, tensor))
    for members in groups.values():
        total = sum(tensor.numel() for _, _, tensor in members)
        if total == 0:
            continue
        first = members[0][2]
        # allocated in shared memory at once, as PyTorch's default_collate does in a worker
        storage = first._typed_storage()._new_shared(total, device='cpu')
        block = first.new(storage).resize_(total)
        offset = 0
        for container, key, tensor in members:
            view = block[offset:offset + tensor.numel()].view(tensor.shape)
            view.copy_(tensor)
            _set(container, key, view)
            offset += tensor.numel()


@FUNCTIONS.register_module()
def packed_pseudo_collate(data_batch):
    """mmengine's ``pseudo_collate``, with the batch's tensors packed for the trip between
    processes (see the module docstring).

    Args:
        data_batch (Sequence): The samples of one batch.

    Returns:
        The batch as ``pseudo_collate`` returns it (lists of tensors and data samples).
    """
    batch = pseudo_collate(data_batch)
    if get_worker_info() is None or not isinstance(batch, dict):
        return batch  # in the main process nothing is sent
    # views of one block are then mapped once by the receiver (file descriptors are fetched per
    # view); it applies to this worker process only
    torch.multiprocessing.set_sharing_strategy('file_system')
    pack_tensors(_tensor_slots(batch))
    return batch
