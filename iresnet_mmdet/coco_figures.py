"""The twelve figures of COCO's box evaluation, the one list of them (the paper's table columns).

Their order and definitions are those of pycocotools' ``COCOeval.summarize()`` for
``iouType='bbox'``, which is also the column order of the paper's SSD300 table. Used by the
evaluation, the paper's tables and the detection table.
"""
from typing import NamedTuple, Optional


class CocoFigure(NamedTuple):
    """One figure.

    Attributes:
        name: its key (``'AP50'``; metrics are ``coco/bbox_<name>``).
        label: its column header in the detection table (``'AP .5'``).
        kind: ``'ap'`` or ``'ar'``.
        iou: the IoU threshold, or None for the mean over .50:.95.
        area: the area range, ``'all'``, ``'small'``, ``'medium'`` or ``'large'``.
        max_dets: the detections per image.
    """
    name: str
    label: str
    kind: str
    iou: Optional[float]
    area: str
    max_dets: int


TWELVE_FIGURES = (
    CocoFigure('AP', 'AP .5:.95', 'ap', None, 'all', 100),
    CocoFigure('AP50', 'AP .5', 'ap', 0.5, 'all', 100),
    CocoFigure('AP75', 'AP .75', 'ap', 0.75, 'all', 100),
    CocoFigure('APs', 'AP S', 'ap', None, 'small', 100),
    CocoFigure('APm', 'AP M', 'ap', None, 'medium', 100),
    CocoFigure('APl', 'AP L', 'ap', None, 'large', 100),
    CocoFigure('AR1', 'AR 1', 'ar', None, 'all', 1),
    CocoFigure('AR10', 'AR 10', 'ar', None, 'all', 10),
    CocoFigure('AR100', 'AR 100', 'ar', None, 'all', 100),
    CocoFigure('ARs', 'AR S', 'ar', None, 'small', 100),
    CocoFigure('ARm', 'AR M', 'ar', None, 'medium', 100),
    CocoFigure('ARl', 'AR L', 'ar', None, 'large', 100),
)
#: The figures' names, in order.
FIGURE_NAMES = tuple(f.name for f in TWELVE_FIGURES)
