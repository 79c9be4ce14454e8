"""Inductor's backend for sunrise: the CPU's C++ kernels, launched as device work.

Kernels come from Inductor's ``CppScheduling`` (vectorized C++ with OpenMP),
as for the CPU: sunrise memory is host-addressable. What differs is how the
wrapper runs them: each is a ``torch_sunrise._C._CompiledKernel`` that queues the
kernel on the current sunrise stream and returns (see
:mod:`torch_sunrise.inductor.kernels`), where the CPU's pybinding would run it
on the calling thread.

Lowering (aten to Inductor's IR) is device-generic except for a few ops that
Inductor lowers its own way for the CPU alone (variance and layer norm in two
passes rather than Welford's, division by a constant); sunrise graphs get the
lowering every other device gets there, so their results are close to compiled
CPU's there, and bitwise equal elsewhere.
"""

from __future__ import annotations

import functools
import glob
import os
from typing import Any, Callable

import torch
from torch._inductor.codegen.common import (
    DeviceOpOverrides,
    register_backend_for_device,
    register_device_op_overrides,
)
from torch._inductor.codegen.cpp import CppScheduling
from torch._inductor.codegen.wrapper import PythonWrapperCodegen, SubgraphPythonWrapperCodegen
from torch._inductor.custom_graph_pass import CustomGraphModulePass, get_hash_for_files

import torch_sunrise

# First line of every sunrise kernel's source. It tells the wrapper which
# kernels to launch on the device (a graph can hold CPU kernels as well), and
# keeps a sunrise kernel from sharing a name with a CPU kernel of equal source.
_SUNRISE_KERNEL_MARK = "// torch_sunrise: launched on the current sunrise stream\n"
_CPU_KERNEL_DEFINITION = "async_compile.cpp_pybinding("


def _as_cpu_codegen(method: Callable[..., Any]) -> Callable[..., Any]:
    """Runs a code-generating method of the C++ scheduling with the graph's current
    device set to the CPU. Inductor picks per-backend behaviour from the current
    device type (``get_current_backend``: dtype propagation, upcasts), and takes any
    device other than cpu, mps, xpu and tpu for a Triton device; the kernels
    generated here are the CPU's."""

    @functools.wraps(method)
    def on_cpu(self: Any, *args: Any, **kwargs: Any) -> Any:
        from torch._inductor.virtualized import V

        with V.graph.set_current_device(torch.device("cpu")):
            return method(self, *args, **kwargs)

    return on_cpu


class SunriseScheduling(CppScheduling):
    """Inductor's C++ scheduling, its kernels marked as sunrise kernels."""

    codegen_node = _as_cpu_codegen(CppScheduling.codegen_node)
    codegen_template = _as_cpu_codegen(CppScheduling.codegen_template)
    flush = _as_cpu_codegen(CppScheduling.flush)

    def define_kernel(self, src_code: str, nodes: Any, kernel_args: Any = None) -> str:
        return super().define_kernel(_SUNRISE_KERNEL_MARK + src_code, nodes, kernel_args)


class _SunriseKernels:
    """What the wrappers of sunrise graphs (and of their subgraphs) do differently."""

    def define_kernel(self, kernel_name: str, kernel_body: str, *args: Any, **kwargs: Any) -> None:
        if _SUNRISE_KERNEL_MARK in kernel_body:
            if not kernel_body.startswith(_CPU_KERNEL_DEFINITION):
                raise NotImplementedError(
                    "torch_sunrise: Inductor's C++ wrapper (torch._inductor.config.cpp_wrapper) is not "
                    "supported on sunrise; compile with the default Python wrapper"
                )
            kernel_body = (
                f"sunrise_cpp_kernel(async_compile, {kernel_name!r}, " + kernel_body[len(_CPU_KERNEL_DEFINITION) :]
            )
        super().define_kernel(kernel_name, kernel_body, *args, **kwargs)  # type: ignore[misc]

    def make_allocation(self, name: str, device: torch.device, *args: Any, **kwargs: Any) -> str:
        line = super().make_allocation(name, device, *args, **kwargs)  # type: ignore[misc]
        # Inductor's allocations name a device type only, relying on the device
        # guard it writes for GPUs; a graph on sunrise:1 allocates on sunrise:1.
        if device.type == "sunrise" and device.index is not None:
            line = line.replace("device='sunrise'", f"device='sunrise:{device.index}'", 1)
        return line


class SunriseSubgraphWrapperCodegen(_SunriseKernels, SubgraphPythonWrapperCodegen):
    pass


class SunriseWrapperCodegen(_SunriseKernels, PythonWrapperCodegen):
    """Python wrapper of a graph on sunrise."""

    @staticmethod
    def create(
        is_subgraph: bool, subgraph_name: Any, parent_wrapper: Any, partition_signatures: Any = None
    ) -> PythonWrapperCodegen:
        if is_subgraph:
            return SunriseSubgraphWrapperCodegen(subgraph_name, parent_wrapper, partition_signatures)
        return SunriseWrapperCodegen()

    def write_header(self) -> None:
        super().write_header()
        self.header.splice("from torch_sunrise.inductor.kernels import cpp_kernel as sunrise_cpp_kernel")


class SunriseDeviceOpOverrides(DeviceOpOverrides):
    """Python the wrapper writes for device management on sunrise."""

    def import_get_raw_stream_as(self, name: str) -> str:
        return f"from torch_sunrise.inductor.device_interface import get_raw_stream as {name}"

    def set_device(self, device_idx: int) -> str:
        return f"torch.sunrise.set_device({device_idx})"

    def synchronize(self) -> str:
        return "torch.sunrise.synchronize()"

    def device_guard(self, device_idx: int) -> str:
        return f"torch.sunrise.device({device_idx})"

    def current_stream(self) -> str:
        return "torch.sunrise.current_stream()"

    def cpp_kernel_type(self) -> str:
        return "void*"


@functools.cache
def _torch_sunrise_hash() -> bytes:
    # What compiled graphs depend on: this package (codegen, kernel loading) and the
    # native module (the launcher, and the eager kernels the wrapper calls).
    package = os.path.dirname(torch_sunrise.__file__)
    files = sorted(glob.glob(os.path.join(package, "inductor", "*.py")))
    files += sorted(glob.glob(os.path.join(package, "_C*.so")))
    return get_hash_for_files(tuple(files))


class TorchSunriseVersion(CustomGraphModulePass):
    """Changes no graph: it puts a hash of torch_sunrise (this package's sources and
    the native module) into Inductor's FX graph cache key, which includes the custom
    passes' ``uuid()``. A cached graph compiled by another torch_sunrise is not served."""

    def __call__(self, gm: torch.fx.GraphModule) -> None:
        return None

    def uuid(self) -> bytes:
        return _torch_sunrise_hash()


def _scheduler_treats_sunrise_nodes_as_cpu() -> None:
    """The one patch of Inductor: ``BaseSchedulerNode.is_cpu()`` answers True for sunrise nodes.

    The scheduler asks ``is_cpu()`` only to keep CPU nodes out of loop reordering,
    loop-index inversion and pointwise reindexing, which assume Triton's (SIMD)
    node groups and fail on C++ kernels' groups (config ``loop_ordering_after_fusion``
    and the like, on by default). Sunrise nodes are C++ kernels too; Inductor has no
    per-backend switch for these passes."""
    from torch._inductor.scheduler import BaseSchedulerNode

    if getattr(BaseSchedulerNode.is_cpu, "_torch_sunrise", False):
        return

    def is_cpu(self: BaseSchedulerNode) -> bool:
        device = self.get_device()
        return device is not None and device.type in ("cpu", "sunrise")

    is_cpu._torch_sunrise = True  # type: ignore[attr-defined]
    BaseSchedulerNode.is_cpu = is_cpu  # type: ignore[method-assign]


def register() -> None:
    """Register the sunrise backend with Inductor (idempotent)."""
    _scheduler_treats_sunrise_nodes_as_cpu()
    register_device_op_overrides("sunrise", SunriseDeviceOpOverrides())
    register_backend_for_device(
        "sunrise",
        SunriseScheduling,
        SunriseWrapperCodegen,
        device_custom_pass=TorchSunriseVersion(),
    )


register()
