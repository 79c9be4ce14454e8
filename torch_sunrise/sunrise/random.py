"""RNG control for sunrise devices, mirroring ``torch.cuda.random``."""

from __future__ import annotations

from typing import Iterable, Union

import torch

from .. import _C
from ._utils import _device_index as _index

__all__ = [
    "default_generators",
    "get_rng_state",
    "get_rng_state_all",
    "initial_seed",
    "manual_seed",
    "manual_seed_all",
    "seed",
    "seed_all",
    "set_rng_state",
    "set_rng_state_all",
]


def _generator(device: Union[int, str, torch.device, None] = None) -> torch.Generator:
    return _C._get_default_generator(_index(device))


#: The default generator of each device, as ``torch.cuda.default_generators``.
default_generators: tuple[torch.Generator, ...] = tuple(
    _C._get_default_generator(i) for i in range(_C._device_count())
)


def get_rng_state(device: Union[int, str, torch.device] = "sunrise") -> torch.Tensor:
    """The RNG state of a device as a ByteTensor (seed and offset)."""
    return _generator(device).get_state()


def get_rng_state_all() -> list[torch.Tensor]:
    """The RNG state of every device."""
    return [get_rng_state(i) for i in range(_C._device_count())]


def set_rng_state(new_state: torch.Tensor, device: Union[int, str, torch.device] = "sunrise") -> None:
    """Restore the RNG state of a device."""
    _generator(device).set_state(new_state.clone(memory_format=torch.contiguous_format).cpu())


def set_rng_state_all(new_states: Iterable[torch.Tensor]) -> None:
    """Restore the RNG state of every device."""
    for i, state in enumerate(new_states):
        set_rng_state(state, i)


def manual_seed(seed: int) -> None:
    """Seed the current device's generator."""
    _generator(None).manual_seed(int(seed))


def manual_seed_all(seed: int) -> None:
    """Seed every device's generator."""
    for i in range(_C._device_count()):
        _C._get_default_generator(i).manual_seed(int(seed))


def seed() -> None:
    """Seed the current device's generator with a random number."""
    _generator(None).seed()


def seed_all() -> None:
    """Seed every device's generator with one random number."""
    s = _C._get_default_generator(0).seed()
    for i in range(1, _C._device_count()):
        _C._get_default_generator(i).manual_seed(s)


def initial_seed() -> int:
    """The current seed of the current device's generator."""
    return _generator(None).initial_seed()
