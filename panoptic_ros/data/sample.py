"""The sample protocol every training and evaluation source hands out.

Synthetic scenes, Cityscapes and COCO panoptic records and pseudo-labelled frames all
provide these three arrays; the training targets and the model evaluation read nothing else.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["PanopticSample"]


class PanopticSample(Protocol):
    """One annotated image."""

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """[H, W, 3] uint8 RGB."""
        ...

    @property
    def semantic(self) -> npt.NDArray[np.uint8]:
        """[H, W] uint8 class index, 255 void."""
        ...

    @property
    def instances(self) -> npt.NDArray[np.int32]:
        """[H, W] int32 instance number, 0 none."""
        ...
