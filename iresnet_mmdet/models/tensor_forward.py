"""A model's tensor outputs without data: a detector's network forward, no post-processing.

mmdet's ``mode='tensor'`` runs ``extract_feat`` and the head's ``forward``. A two-stage detector's
``mode='tensor'`` would pick proposals from its RPN's outputs, so here its RoI head runs on fixed
proposals given by the caller instead: the outputs then do not depend on near-equal RPN scores, and
the complexity counter needs no image. Used by the complexity counter, the conv-BN fusion check and
the ONNX verifier.
"""
from typing import Callable, List, Optional

import torch


def image_sample(x: torch.Tensor):
    """A ``DetDataSample`` describing one unpadded, unscaled image of the batch ``x``."""
    from mmdet.structures import DetDataSample
    size = tuple(x.shape[-2:])
    return DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size,
                                       batch_input_shape=size, scale_factor=(1.0, 1.0)))


def tensor_forward(model: torch.nn.Module, x: torch.Tensor,
                   proposals: Optional[Callable[[torch.Tensor], List]] = None):
    """The tensor outputs of ``model`` on the batch ``x``.

    Args:
        model: An mmdet detector, or any module (then its plain forward).
        x: The (preprocessed) batch.
        proposals: For a two-stage detector: called with ``x``, returns one ``InstanceData``
            with ``bboxes`` per image, the proposals of the RoI head.

    Returns:
        A single-stage detector's head outputs (mmdet's ``mode='tensor'``); for a two-stage
        detector ``[features, RPN head outputs, RoI head outputs]``; a module's own output.
    """
    from mmdet.models.detectors import BaseDetector, TwoStageDetector
    samples = [image_sample(x) for _ in range(len(x))]
    if isinstance(model, TwoStageDetector):
        feats = model.extract_feat(x)
        outputs = [feats]
        if model.with_rpn:
            outputs.append(model.rpn_head(feats))
        if model.with_roi_head:
            outputs.append(model.roi_head.forward(feats, proposals(x), samples))
        return outputs
    if isinstance(model, BaseDetector):
        return model(x, samples, mode='tensor')
    return model(x)
