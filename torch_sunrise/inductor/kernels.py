"""Compiling and loading the C++ kernels Inductor generates for sunrise.

The source is Inductor's CPU kernel (device memory is host-addressable), plus
an entry point with one signature, ``sunrise_kernel_entry(const uint64_t*
args)``, that casts each argument slot to its parameter type. The library is
loaded with ctypes and the entry point wrapped in ``torch_sunrise._C._CompiledKernel``:
calling that with the kernel's tensors and scalars queues the kernel on the
current sunrise stream (csrc/kernels/CompiledKernel.h).
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Sequence

from torch._inductor.async_compile import AsyncCompile, get_compile_threads
from torch._inductor.codecache import CppCodeCache, LambdaFuture, _get_cpp_prefix_header
from torch._inductor.utils import clear_on_fresh_cache

from .. import _C

ENTRY_POINT = "sunrise_kernel_entry"


def entry_point_source(arg_types: Sequence[str]) -> str:
    """C++ of the entry point for a kernel with parameters of ``arg_types``
    (Inductor's ``cpp_argdefs`` types: pointers, integers, ``float``/``double``)."""
    params = []
    for i, arg_type in enumerate(arg_types):
        base = arg_type.replace("const ", "").strip()
        if base.endswith("*"):
            params.append(f"reinterpret_cast<{arg_type}>(args[{i}])")
        elif base in ("float", "double"):
            params.append(f"sunrise_float_arg<{base}>(args[{i}])")
        else:
            params.append(f"static_cast<{base}>(args[{i}])")
    return f"""
#include <cstdint>
#include <cstring>
// Python floats arrive as a double's bits.
template <typename T> static inline T sunrise_float_arg(uint64_t bits) {{
  double value;
  std::memcpy(&value, &bits, sizeof(value));
  return static_cast<T>(value);
}}
extern "C" __attribute__((visibility("default"))) void {ENTRY_POINT}(const uint64_t* args) {{
  kernel({", ".join(params)});
}}
"""


@clear_on_fresh_cache
class SunriseKernelCodeCache(CppCodeCache):
    """Inductor's cache of compiled C++ (source hash -> shared object), for sunrise kernels."""

    cache: dict[str, Callable[[], Any]] = {}
    cache_clear = staticmethod(cache.clear)
    # Kernels do not link libtorch, as the CPU's pybinding kernels.
    cpp_compile_command_flags = {"include_pytorch": False, "shared": True}

    @classmethod
    def _get_uncompiled_header(cls, device: str) -> str | None:
        return _get_cpp_prefix_header("cpu")


def _launcher(library: ctypes.CDLL, name: str) -> Any:
    entry = ctypes.cast(getattr(library, ENTRY_POINT), ctypes.c_void_p).value
    return _C._CompiledKernel(entry, library, name)


def cpp_kernel(async_compile: AsyncCompile, name: str, arg_types: Sequence[str], source_code: str) -> Any:
    """What the generated wrapper calls for each sunrise kernel (in place of
    ``async_compile.cpp_pybinding``): the kernel's launcher, or a future of it
    when Inductor compiles in parallel. ``name`` (``cpp_fused_add_0``) is what
    profiler traces call its launches."""
    source = source_code + entry_point_source(arg_types)
    if get_compile_threads() <= 1:
        return _launcher(SunriseKernelCodeCache.load(source, "cpu"), name)
    load = SunriseKernelCodeCache.load_async(source, "cpu", submit_fn=async_compile.submit)
    return LambdaFuture(lambda: _launcher(load(), name))
