"""The C++ layers' include rules (csrc/README.md). The build enforces them for
rooted includes (each layer's include root holds only the layers below it);
these checks catch what an include root cannot: a path relative to the file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
# What each layer may include by rooted path (besides its own folder's files).
ALLOWED = {"runtime": set(), "kernels": {"kernels"}, "aten": {"kernels", "aten"},
           "distributed": {"kernels", "distributed"}, "python": {"kernels", "aten", "distributed", "python"}}


def _includes(folder: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / "csrc" / folder).glob("*.[ch]*")):
        found += [(path, inc) for inc in INCLUDE.findall(path.read_text())]
    return found


def test_no_include_climbs_out_of_its_folder() -> None:
    bad = [(p.relative_to(ROOT), inc) for layer in ALLOWED for p, inc in _includes(layer) if ".." in inc]
    bad += [(p.relative_to(ROOT), inc) for p in sorted((ROOT / "include").rglob("*.h"))
            for inc in INCLUDE.findall(p.read_text()) if ".." in inc]
    assert not bad, f"relative includes bypass the layer roots; use rooted paths: {bad}"


def test_each_layer_includes_only_layers_below_it() -> None:
    bad = []
    for layer, allowed in ALLOWED.items():
        for path, inc in _includes(layer):
            top = inc.split("/")[0] if "/" in inc else None
            if top is not None and top not in allowed:
                bad.append((str(path.relative_to(ROOT)), inc))
    assert not bad, bad
