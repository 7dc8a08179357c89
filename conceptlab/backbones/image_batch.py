"""One model-input batch from a list of PIL images, with the backbone's own preprocessing.

When the preprocessing ends in ``ToTensor`` + ``Normalize`` (open_clip's and torchvision's usual
pipelines), the steps before them run per image and the last two once on the stacked uint8 batch:
the same element-wise float32 operations (divide by 255, subtract the mean, divide by the std),
so the same bits, without two tensor conversions per image. Any other preprocessing runs per
image as given. Extraction's DataLoader workers and ``encode_images`` both batch through here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["BatchPreprocess"]


class BatchPreprocess:
    """``preprocess`` applied to a list of PIL images, stacked into one (N, C, H, W) tensor.

    A top-level class (picklable under any multiprocessing start method)."""

    def __init__(self, preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.preprocess = preprocess
        self._tail = _tensor_tail(preprocess)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        rgb = [image.convert("RGB") for image in images]
        if self._tail is not None:
            steps, mean, std = self._tail
            arrays = [np.asarray(steps(image)) for image in rgb]
            if all(a.dtype == np.uint8 and a.ndim == 3 and a.shape == arrays[0].shape for a in arrays):
                batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
                return batch.to(mean.dtype).div(255).sub_(mean).div_(std)
        return torch.stack([self.preprocess(image) for image in rgb])


def _tensor_tail(preprocess):
    """(the steps before ToTensor, mean, std) when ``preprocess`` is ``Compose([..., ToTensor, Normalize])``;
    None otherwise."""
    from torchvision import transforms

    steps = getattr(preprocess, "transforms", None)
    if type(preprocess) is not transforms.Compose or not steps or len(steps) < 2:
        return None
    to_tensor, normalize = steps[-2], steps[-1]
    if type(to_tensor).__name__ not in ("ToTensor", "MaybeToTensor") or type(normalize) is not transforms.Normalize:
        return None
    dtype = torch.get_default_dtype()
    mean = torch.as_tensor(normalize.mean, dtype=dtype).view(1, -1, 1, 1)
    std = torch.as_tensor(normalize.std, dtype=dtype).view(1, -1, 1, 1)
    return transforms.Compose(list(steps[:-2])), mean, std
