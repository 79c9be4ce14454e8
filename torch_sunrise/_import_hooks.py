"""Running code right after a module is imported, without importing it.

torch_sunrise extends libraries that it must not import itself: Dynamo (whose
device-interface table has no lazy hook for PrivateUse1 backends; importing
``torch._dynamo`` from ``import torch_sunrise`` would slow every ``import
torch``, as the package is autoloaded) and HuggingFace's libraries
(:mod:`torch_sunrise.integrations.huggingface`). A finder on ``sys.meta_path``
waits for the modules named and runs their callbacks once the module has
executed, whichever is imported first.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from types import ModuleType
from typing import Any, Callable, Optional

_Callback = Callable[[ModuleType], None]

_lock = threading.Lock()
_callbacks: dict[str, list[_Callback]] = {}
# (module, callback) for modules that were still executing when watched (torch_sunrise is
# imported by ``import torch`` inside the module's own imports): run once they have executed,
# checked whenever something is imported next.
_deferred: list[tuple[ModuleType, _Callback]] = []
_finder: Optional["_RunAfterImport"] = None


def on_import(name: str, callback: _Callback) -> None:
    """Call ``callback(module)`` each time module ``name`` has executed (an import or
    a reload), and at once if it has been imported already."""
    global _finder
    with _lock:
        _callbacks.setdefault(name, []).append(callback)
        if _finder is None:
            _finder = _RunAfterImport()
            sys.meta_path.insert(0, _finder)
    module = sys.modules.get(name)
    if module is None:
        return
    if _initializing(module):
        with _lock:
            _deferred.append((module, callback))
    else:
        _call(callback, module)


def _call(callback: _Callback, module: ModuleType) -> None:
    # A failing registration must not fail the import of the module (torch's own).
    try:
        callback(module)
    except Exception as error:
        warnings.warn(f"torch_sunrise: setting up {module.__name__} failed: {error!r}", RuntimeWarning,
                      stacklevel=2)


def _initializing(module: ModuleType) -> bool:
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _run_deferred() -> None:
    with _lock:
        ready = [(m, c) for m, c in _deferred if not _initializing(m)]
        _deferred[:] = [(m, c) for m, c in _deferred if _initializing(m)]
    for module, callback in ready:
        _call(callback, module)


class _RunAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the other finders for
    the spec and makes the loader run the callbacks once the module executed."""

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if _deferred:
            _run_deferred()
        if fullname not in _callbacks or getattr(self._busy, "name", None) == fullname:
            return None
        self._busy.name = fullname
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.name = None
        loader = getattr(spec, "loader", None)
        # Source and bytecode loaders are made per file, so the module keeps its
        # own loader (linecache and inspect read sources through it).
        if not isinstance(loader, (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)):
            return spec
        exec_module = loader.exec_module

        def exec_then_call_back(module: ModuleType) -> None:
            exec_module(module)
            with _lock:
                callbacks = list(_callbacks.get(fullname, ()))
            for callback in callbacks:
                _call(callback, module)

        loader.exec_module = exec_then_call_back  # type: ignore[method-assign]
        return spec
