"""torch_sunrise: the Sunrise GPGPU as a PyTorch device.

``import torch_sunrise`` (or plain ``import torch``, through the ``torch.backends``
entry point) renames PyTorch's PrivateUse1 backend to ``"sunrise"``, registers the
``torch.sunrise`` module and generates ``Tensor.sunrise()``, ``Tensor.is_sunrise``,
``Module.sunrise()`` and the storage methods.
"""

from __future__ import annotations


def _autoload() -> None:
    """Entry point for ``torch.backends``: importing this package registers it.

    Defined before ``import torch``: when this package is imported first, torch's
    own import runs the entry point while this module is still initializing.
    """


import atexit
import sys
import warnings

import torch


def _autoloading() -> bool:
    """True while ``import torch`` is loading this package as a device backend."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_import_device_backends":
            return True
        frame = frame.f_back
    return False


try:
    from . import _C  # noqa: F401  (the native extension: allocator, hooks, kernels)
except ImportError as _error:
    if not _autoloading():
        raise
    # A broken install must not break `import torch` for CPU-only code.
    warnings.warn(
        f"torch_sunrise is installed but could not be loaded ({_error}); the sunrise device is "
        "unavailable. `import torch_sunrise` shows the full error; TORCH_DEVICE_BACKEND_AUTOLOAD=0 "
        "silences this.",
        RuntimeWarning,
        stacklevel=2,
    )
    _C = None

if _C is not None:
    from . import sunrise as _sunrise_module

__all__ = [
    "fallback_reasons",
    "fallback_stats",
    "fallback_times",
    "get_fallback_mode",
    "queued_fallback_stats",
    "reset_fallback_stats",
    "set_fallback_mode",
]
__version__ = "0.1.0"

_BACKEND = "sunrise"


def _register() -> None:
    if torch._C._get_privateuse1_backend_name() != _BACKEND:
        torch.utils.rename_privateuse1_backend(_BACKEND)
    if not hasattr(torch, _BACKEND):
        torch._register_device_module(_BACKEND, _sunrise_module)
    if not hasattr(torch.Tensor, "is_sunrise"):
        torch.utils.generate_methods_for_privateuse1_backend(
            for_tensor=True, for_module=True, for_packed_sequence=True, for_storage=True
        )


def fallback_stats() -> dict[str, int]:
    """Return ``{operator name: calls}`` for every operator that ran on the synchronous CPU
    fallback: it has no sunrise kernel, and could not run as device work (see
    :func:`fallback_reasons`), so each call waited for the device and ran on the host."""
    return {name: s[0] for name, s in _C._fallback_stats().items() if s[0]}


def fallback_times() -> dict[str, tuple[int, float]]:
    """Return ``{operator name: (calls, seconds)}`` for the synchronous CPU fallback (host time,
    the wait for the device included)."""
    return {name: (s[0], s[1] / 1e9) for name, s in _C._fallback_stats().items() if s[0]}


def fallback_reasons() -> dict[str, str]:
    """Return ``{operator name: reason}`` for the operators in :func:`fallback_stats`: why their
    last call could not be queued as device work (no Meta kernel, an output shape that depends
    on the data, a view returned, ...)."""
    return {name: s[4] for name, s in _C._fallback_stats().items() if s[0]}


def queued_fallback_stats() -> dict[str, int]:
    """Return ``{operator name: calls}`` for every operator without a sunrise kernel whose calls
    ran as device work: ATen's CPU kernel queued on the current stream over device memory, its
    outputs sized by the operator's Meta kernel. The host did not wait for these calls (except
    the first with each combination of dtypes, which checks for errors, and calls returning a
    host value)."""
    return {name: s[2] for name, s in _C._fallback_stats().items() if s[2]}


def reset_fallback_stats() -> None:
    """Clear the fallback counters (and re-arm the once-per-op warnings)."""
    _C._reset_fallback_stats()


def set_fallback_mode(mode: str) -> None:
    """Set what happens when an op has no sunrise kernel: ``"warn"`` (run it on
    the CPU, warning once per op), ``"silent"`` or ``"error"`` (raise
    NotImplementedError). Overrides ``SUNRISE_FALLBACK``."""
    _C._set_fallback_mode(mode)


def get_fallback_mode() -> str:
    """The current fallback mode: ``"warn"``, ``"silent"`` or ``"error"``."""
    return _C._get_fallback_mode()


def _drain_devices_at_exit() -> None:
    # Queued device work may reference tensors; let it finish before the
    # interpreter tears torch down underneath the device threads.
    if not _sunrise_module.is_initialized():
        return
    for index in range(_C._device_count()):
        try:
            _C._synchronize(index)
        except Exception:  # an error nobody will read any more
            pass


if _C is not None:
    _register()
    atexit.register(_drain_devices_at_exit)
    # torch.compile: Dynamo's device interface and Inductor's backend, registered
    # when torch loads them (torch_sunrise/inductor/__init__.py).
    from .inductor import install as _install_compile

    _install_compile()
    # torch.distributed: the "sccl" backend for sunrise tensors (torch_sunrise/distributed.py).
    from .distributed import register as _register_distributed

    _register_distributed()
    # torch.multiprocessing: a clear error for sunrise tensors sent to another process.
    from .multiprocessing import register as _register_multiprocessing

    _register_multiprocessing()
    # HuggingFace libraries pick sunrise like CUDA, patched lazily when they
    # are imported (docs/huggingface.md; SUNRISE_HF_INTEGRATION=0 disables).
    from .integrations.huggingface import _enable_on_import

    _enable_on_import()


# Compare with CPU (torch_sunrise/debug.py, docs/debugging.md): `torch_sunrise.debug` is imported
# on first use, and at import only when SUNRISE_COMPARE_CPU asks for the mode.
def __getattr__(name: str) -> object:
    if name == "debug":
        import importlib

        return importlib.import_module(f"{__name__}.debug")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if _C is not None:
    import os as _os

    if _os.environ.get("SUNRISE_COMPARE_CPU", "0").strip().lower() not in ("", "0"):
        from .debug import _enable_from_env

        _enable_from_env(_os.environ["SUNRISE_COMPARE_CPU"])
