"""mmdet's ``SSDHead`` with the prediction crash of mmdet 3.3.0 fixed."""
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS


@MODELS.register_module()
class FixedSSDHead(SSDHead):
    """``SSDHead`` that can predict (val/test/inference) under mmdet 3.3.0.

    The bug: ``SSDHead.__init__`` skips ``AnchorHead.__init__`` (it calls
    ``super(AnchorHead, self).__init__``), so ``self.loss_cls`` is never created; SSD computes its
    classification loss inline (cross-entropy with hard negative mining in
    ``loss_by_feat_single``). mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` asks
    ``getattr(self.loss_cls, 'custom_cls_channels', False)`` before choosing softmax or sigmoid,
    so every prediction raises ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``
    (upstream issues open-mmlab/mmdetection#11063, #11305, #11780). Training is unaffected.

    The fix: set ``loss_cls = None``, which states the truth (SSD has no configurable
    classification loss module) and makes that ``getattr`` return ``False``, so prediction takes the
    usual softmax path (``use_sigmoid_cls`` is ``False`` for SSD). No parameter, buffer, loss or
    output changes; the constructor arguments are exactly ``SSDHead``'s.

    Args:
        *args: Positional arguments of :class:`mmdet.models.dense_heads.SSDHead`.
        **kwargs: Keyword arguments of :class:`mmdet.models.dense_heads.SSDHead`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self, 'loss_cls'):
            self.loss_cls = None
