"""``torch.compile`` on sunrise: Dynamo's device interface and Inductor's backend.

Nothing here is imported by ``import torch_sunrise``; :func:`install` arranges
for the registrations to happen when torch itself loads the parts they extend:

* Dynamo's device interface when ``torch._dynamo.device_interface`` is
  imported (or at once, if it already was);
* Inductor's backend through PyTorch's lazy hook for PrivateUse1 backends:
  Inductor looks up ``torch.sunrise.Scheduling`` the first time it needs a
  backend (``torch.sunrise.__getattr__`` imports :mod:`.codegen`, which registers).
"""

from __future__ import annotations

from types import ModuleType

from .._import_hooks import on_import


def _register_device_interface(module: ModuleType) -> None:
    from .device_interface import register

    register(module)


def install() -> None:
    """Arrange for the registrations above (called by ``import torch_sunrise``)."""
    on_import("torch._dynamo.device_interface", _register_device_interface)


def codegen_attribute(name: str) -> object:
    """``torch.sunrise.<name>`` for Inductor's lazy backend lookup: ``Scheduling`` and
    ``PythonWrapperCodegen``. No ``CppWrapperCodegen``: Inductor's own registration
    of a backend found this way would drop the cache-key pass that :mod:`.codegen`
    registers, and the C++ wrapper is not supported yet."""
    from . import codegen

    return {"Scheduling": codegen.SunriseScheduling, "PythonWrapperCodegen": codegen.SunriseWrapperCodegen}[name]
