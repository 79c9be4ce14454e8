"""``torch.sunrise.amp``, as ``torch.cuda.amp``: ``autocast``, ``GradScaler``,
``custom_fwd`` and ``custom_bwd`` for the sunrise device.

Like torch.cuda's, these spellings are deprecated in favour of the
device-generic ones (``torch.amp.autocast("sunrise")``,
``torch.amp.GradScaler("sunrise")``, ``torch.amp.custom_fwd(device_type=
"sunrise")``), and warn so (``FutureWarning``) when used.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from typing_extensions import deprecated

__all__ = ["GradScaler", "autocast", "custom_bwd", "custom_fwd"]

_DEVICE = "sunrise"


@deprecated(
    "`torch.sunrise.amp.autocast(args...)` is deprecated. Please use `torch.amp.autocast('sunrise', args...)` "
    "instead.",
    category=FutureWarning,
)
class autocast(torch.amp.autocast_mode.autocast):
    """``torch.autocast("sunrise", ...)``, with ``torch.cuda.amp.autocast``'s arguments (float16 by default)."""

    def __new__(cls, enabled: bool = True, dtype: torch.dtype = torch.float16, cache_enabled: bool = True) -> "autocast":
        return super().__new__(cls)

    def __init_subclass__(cls) -> None:
        pass

    def __init__(self, enabled: bool = True, dtype: torch.dtype = torch.float16, cache_enabled: bool = True) -> None:
        super().__init__(_DEVICE, enabled=enabled, dtype=dtype, cache_enabled=cache_enabled)


class GradScaler(torch.amp.GradScaler):
    """``torch.amp.GradScaler("sunrise", ...)``, with ``torch.cuda.amp.GradScaler``'s arguments."""

    @deprecated(
        "`torch.sunrise.amp.GradScaler(args...)` is deprecated. Please use `torch.amp.GradScaler('sunrise', "
        "args...)` instead.",
        category=FutureWarning,
    )
    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        super().__init__(
            _DEVICE,
            init_scale=init_scale,
            growth_factor=growth_factor,
            backoff_factor=backoff_factor,
            growth_interval=growth_interval,
            enabled=enabled,
        )


@deprecated(
    "`torch.sunrise.amp.custom_fwd(args...)` is deprecated. Please use "
    "`torch.amp.custom_fwd(args..., device_type='sunrise')` instead.",
    category=FutureWarning,
)
def custom_fwd(fwd: Optional[Callable[..., Any]] = None, *, cast_inputs: Optional[torch.dtype] = None) -> Any:
    """``torch.amp.custom_fwd(..., device_type="sunrise")``."""
    return torch.amp.custom_fwd(fwd, device_type=_DEVICE, cast_inputs=cast_inputs)


@deprecated(
    "`torch.sunrise.amp.custom_bwd(args...)` is deprecated. Please use "
    "`torch.amp.custom_bwd(args..., device_type='sunrise')` instead.",
    category=FutureWarning,
)
def custom_bwd(bwd: Callable[..., Any]) -> Any:
    """``torch.amp.custom_bwd(..., device_type="sunrise")``."""
    return torch.amp.custom_bwd(bwd, device_type=_DEVICE)
