from .batched_ssd_head import BatchedSSDHead
from .fixed_ssd_head import FixedSSDHead

__all__ = ['BatchedSSDHead', 'FixedSSDHead']
