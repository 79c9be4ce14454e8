"""Helpers the torch.sunrise submodules share."""

from __future__ import annotations

from typing import Union

import torch

from .. import _C

_DeviceLike = Union[torch.device, str, int, None]


def _device_index(device: _DeviceLike = None, optional: bool = True, negative_is_current: bool = False) -> int:
    """Normalise ``device`` ("sunrise:1", torch.device, int, None) to an index.

    None (when ``optional``) and a device without an index mean the current
    device; so does a negative int with ``negative_is_current``, as torch.cuda's
    stream functions take it.
    """
    if device is None:
        if not optional:
            raise ValueError("Expected a sunrise device, got None")
        return _C._get_device()
    if isinstance(device, int):
        return _C._get_device() if device < 0 and negative_is_current else device
    if isinstance(device, str):
        device = torch.device(device)
    if isinstance(device, torch.device):
        if device.type != "sunrise":
            raise ValueError(f"Expected a sunrise device, got {device}")
        return _C._get_device() if device.index is None else device.index
    raise TypeError(f"Expected a sunrise device (torch.device, str or int), got {type(device).__name__}")
