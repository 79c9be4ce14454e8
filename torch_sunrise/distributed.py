"""torch.distributed on sunrise: the ``"sccl"`` collective backend.

Registered with c10d for the sunrise device (``import torch_sunrise`` does it; torch imports
``torch.distributed`` anyway), so that

* ``init_process_group()`` with no backend uses gloo for CPU tensors and sccl for sunrise tensors,
  as it uses nccl for CUDA ones; ``init_process_group("cpu:gloo,sunrise:sccl")`` and
  ``init_process_group(device_id=torch.device("sunrise", local_rank))`` too;
* DDP, FSDP2, DTensor and the functional collectives work on sunrise tensors.

A collective is queued on the process group's communication stream after the work already queued
on the caller's current stream; ``Work.wait()`` makes the current stream wait for it, without
blocking the host (``barrier`` blocks, as with NCCL). The bytes move through a gloo backend of
the same ranks over TCP, driven by the device thread over the tensors' memory (device memory is
host memory in the emulation, so nothing is staged). See ``csrc/distributed/ProcessGroupSCCL.h``.
"""

from __future__ import annotations

import os
from typing import Any

import torch.distributed as dist

from . import _C

BACKEND = "sccl"
# "0": collectives skip the check that every rank calls the same one with tensors of the same
# dtype and size (a tiny all-gather before each; without it a mismatch makes gloo abort the process).
CHECK_ENV = "SUNRISE_COLLECTIVE_CHECKS"


def _create_backend(options: Any, backend_options: Any) -> Any:
    """c10d's creator for the backend (``register_backend(..., extended_api=True)``): ``options``
    holds the group's store (already prefixed for this device), rank, size and timeout."""
    _C._init_distributed()

    def gloo(prefix: str) -> Any:
        store = dist.PrefixStore(prefix, options.store)
        return dist.ProcessGroupGloo(store, options.group_rank, options.group_size, options.timeout)

    checker = gloo("check/") if os.environ.get(CHECK_ENV, "1") != "0" else None
    return _C.ProcessGroupSCCL(gloo("data/"), checker, options.group_rank, options.group_size)


def register() -> None:
    """Register ``"sccl"`` with c10d as the default backend of the sunrise device (idempotent)."""
    if not dist.is_available() or BACKEND in dist.Backend.backend_list:
        return
    dist.Backend.register_backend(BACKEND, _create_backend, extended_api=True, devices=["sunrise"])
