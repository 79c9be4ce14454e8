"""Sunrise tensors and ``torch.multiprocessing``: a clear error instead of CPU's.

CUDA shares device memory with other processes through CUDA IPC; the emulated device has no
inter-process memory yet, so a sunrise tensor (or storage) sent to another process (a
``torch.multiprocessing`` queue, ``spawn`` arguments) raises a ``RuntimeError`` that says so and
what to do, rather than CPU's "_share_fd_: only available on CPU". Everything else is pickled by
torch's own reducers, which these wrap (``multiprocessing.reduction.ForkingPickler``'s registry,
the extension point ``torch.multiprocessing`` itself uses).
"""

from __future__ import annotations

import functools
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable

import torch
import torch.multiprocessing  # noqa: F401  (its reducers are registered when it is imported)

_MESSAGE = (
    "sunrise tensors cannot be shared with another process: the emulated device has no "
    "inter-process memory (CUDA's IPC). Send a CPU copy (tensor.cpu()) and move it to the device "
    "in the receiving process, or give each process its own sunrise tensors (one device per "
    "process, as torchrun does)."
)


def _refusing_sunrise(reduce: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(reduce)
    def reducer(obj: Any) -> Any:
        if obj.device.type == "sunrise":
            raise RuntimeError(_MESSAGE)
        return reduce(obj)

    reducer.__torch_sunrise__ = True  # type: ignore[attr-defined]
    return reducer


def register() -> None:
    """Wrap torch's reducers of tensors and untyped storages (idempotent)."""
    from torch.nn.parameter import Parameter

    for cls in (torch.Tensor, Parameter, *torch._tensor_classes, torch.UntypedStorage):
        reduce = ForkingPickler._extra_reducers.get(cls)
        if reduce is None or getattr(reduce, "__torch_sunrise__", False):
            continue
        ForkingPickler.register(cls, _refusing_sunrise(reduce))
