"""Building C++ extensions against torch_sunrise's C++ API.

The package installs its public headers (``include/torch_sunrise/*.h``: streams, events,
guards, the caching allocator, ``launch_task``/``launch_blocks``) and the runtime's C API
(``sunrise_rt.h``), as torch installs its own. An extension compiles against them and links
``torch_sunrise._C``, the module that implements them::

    import torch_sunrise.cpp_extension as sunrise_ext
    from torch.utils.cpp_extension import load

    load("my_ops", ["my_ops.cpp"], extra_include_paths=sunrise_ext.include_paths(),
         extra_ldflags=sunrise_ext.ldflags(), is_python_module=False)

or ``SunriseExtension("my_ops", ["my_ops.cpp"])`` in a ``setup.py`` where ``CppExtension``
would go. Import ``torch_sunrise`` (``import torch`` autoloads it) before loading the
extension: the extension uses the device the package registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _C

_PACKAGE_DIR = Path(__file__).resolve().parent


def include_paths() -> list[str]:
    """Directories to add to the include path: ``<torch_sunrise/...>`` and ``<sunrise_rt.h>``."""
    include = _PACKAGE_DIR / "include"
    if not (include / "torch_sunrise" / "SunriseLaunch.h").is_file():
        raise RuntimeError(
            f"torch_sunrise's C++ headers are missing from {include}; reinstall the package "
            "(the build copies them there)"
        )
    return [str(include)]


def library_paths() -> list[str]:
    """Directories holding the library an extension links (``torch_sunrise._C``)."""
    return [str(_PACKAGE_DIR)]


def ldflags() -> list[str]:
    """Linker flags that link ``torch_sunrise._C`` and find it again at load time."""
    module = Path(_C.__file__).name
    return [f"-L{_PACKAGE_DIR}", f"-l:{module}", f"-Wl,-rpath,{_PACKAGE_DIR}"]


def SunriseExtension(name: str, sources: list[str], *args: Any, **kwargs: Any) -> Any:
    """A ``setuptools.Extension`` for C++ code using the sunrise C++ API.

    Takes the arguments of ``torch.utils.cpp_extension.CppExtension`` and adds the include
    paths and linker flags above.
    """
    from torch.utils.cpp_extension import CppExtension

    kwargs["include_dirs"] = [*kwargs.get("include_dirs", []), *include_paths()]
    kwargs["extra_link_args"] = [*kwargs.get("extra_link_args", []), *ldflags()]
    return CppExtension(name, sources, *args, **kwargs)
