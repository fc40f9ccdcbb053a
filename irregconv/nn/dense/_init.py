"""``torch.nn.Conv*``'s parameter initialisation, for the dense variants that own their kernels."""
from __future__ import annotations

import math
from typing import Optional

from torch import Tensor, nn


def init_like_conv_(weight: Tensor, bias: Optional[Tensor], fan_in: Optional[int] = None) -> None:
    """Kaiming-uniform ``weight`` (a = sqrt 5) and ``bias`` uniform in ``+-1 / sqrt(fan_in)``, in that order
    (the same random draws as ``nn.Conv2d``); ``fan_in`` defaults to ``weight[0].numel()``."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(weight[0].numel() if fan_in is None else fan_in)
        nn.init.uniform_(bias, -bound, bound)
