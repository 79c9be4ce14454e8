"""Build torch_sunrise: CMake + Ninja compile the runtime and the torch glue.

Install with ``pip install --no-build-isolation -e .`` into an environment that
already has torch==2.13.0 (build isolation would fetch another torch). The CMake
build directory (build/cmake) persists, so rebuilds are incremental.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        # The library is always built into the source package, so that a plain
        # `cmake --build build/cmake` (or ninja) updates the editable install;
        # setuptools then gets a copy where it expects one.
        output_dir = ROOT / "torch_sunrise"
        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        build_dir = ROOT / "build" / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        configure = [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build_dir),
            "-G",
            "Ninja",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DSUNRISE_OUTPUT_DIR={output_dir}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('SUNRISE_BUILD_TYPE', 'Release')}",
        ]
        env = dict(os.environ, TORCH_DEVICE_BACKEND_AUTOLOAD="0")
        subprocess.run(configure, check=True, env=env)
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_dir), "--", f"-j{jobs}"], check=True, env=env)
        built = output_dir / target.name
        if built.resolve() != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, target)
            # The C++ API for other extensions (torch_sunrise.cpp_extension).
            shutil.copytree(output_dir / "include", target.parent / "include", dirs_exist_ok=True)


setup(
    name="torch_sunrise",
    version="0.1.0",
    description="The Sunrise GPGPU as a PyTorch device (PrivateUse1), on a CPU-emulated runtime",
    packages=find_packages(include=["torch_sunrise", "torch_sunrise.*"]),
    ext_modules=[CMakeExtension("torch_sunrise._C")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.10",
    install_requires=["torch==2.13.0", "numpy"],
    entry_points={
        # `import torch` loads the backend (TORCH_DEVICE_BACKEND_AUTOLOAD=0 disables).
        "torch.backends": ["sunrise = torch_sunrise:_autoload"],
        # torch.compile(backend="sunrise_graphs"): Inductor's code replayed as sunrise graphs.
        "torch_dynamo_backends": ["sunrise_graphs = torch_sunrise.inductor.graphs_backend:sunrise_graphs"],
        "console_scripts": [
            "sunrise-fallback-report = torch_sunrise.tools.fallback_report:main",
            # CUDA scripts on sunrise, unchanged (torch_sunrise/transfer_to_sunrise.py).
            "sunrise-run = torch_sunrise.transfer_to_sunrise:main",
        ],
    },
    zip_safe=False,
)
