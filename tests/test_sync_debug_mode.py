"""torch.sunrise.set_sync_debug_mode, torch.cuda.set_sync_debug_mode's twin: with "warn" every op
that makes the host wait for the device (or read device data) warns, naming the op; with "error" it
raises before waiting. Asynchronous work and explicit synchronization are not reported, as on CUDA.
The tool for finding what makes a training loop wait for the device every step."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator

import pytest
import torch

X = torch.tensor([[-1.5, 2.0, 0.0], [3.0, -0.5, 4.0]])
REPORT = "called a synchronizing sunrise operation"

# Each makes the host wait for the device, on CUDA too.
WAITING: dict[str, Callable[[torch.Tensor], Any]] = {
    "item": lambda x: x.sum().item(),
    "bool": lambda x: bool(x.sum() > 0),
    "cpu": lambda x: x.cpu(),
    "tolist": lambda x: x.tolist(),
    "pageable to device": lambda x: X.to(x.device),
    "boolean index": lambda x: x[x > 0],
    "nonzero": lambda x: torch.nonzero(x),
    "equal": lambda x: torch.equal(x, x * 1),
    "synchronous fallback": lambda x: torch.bincount(x.abs().long().flatten()),
}

# Each leaves the host free (or waits explicitly, which CUDA does not report either).
NOT_WAITING: dict[str, Callable[[torch.Tensor], Any]] = {
    "elementwise": lambda x: x * 2 + 1,
    "matmul": lambda x: x @ x.t(),
    "reduction": lambda x: x.sum(1),
    "where": lambda x: torch.where(x > 0, x, 0.0),
    "pinned non_blocking": lambda x: X.pin_memory().to(x.device, non_blocking=True),
    "synchronize": lambda x: torch.sunrise.synchronize(),
    "stream synchronize": lambda x: torch.sunrise.current_stream().synchronize(),
    "event synchronize": lambda x: torch.sunrise.current_stream().record_event().synchronize(),
}


@pytest.fixture
def sync_debug() -> Iterator[Callable[[int | str], None]]:
    yield torch.sunrise.set_sync_debug_mode
    torch.sunrise.set_sync_debug_mode("default")


def reports(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught if REPORT in str(w.message)]


def on_device(x: torch.Tensor) -> torch.Tensor:
    return x.to("sunrise")


def assert_same(got: Any, expected: Any) -> None:
    """Bitwise; some of these return host values or CPU tensors."""
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=0)
    else:
        assert got == expected


def run_in_warn_mode(fn: Callable[[torch.Tensor], Any], set_mode: Callable[[int | str], None]) -> tuple[Any, list[str]]:
    """fn on a device copy of X, with nothing pending before it: its result and its reports."""
    x = on_device(X)
    torch.sunrise.synchronize()
    set_mode("warn")
    try:
        return reports(lambda: fn(x))
    finally:
        set_mode("default")


@pytest.mark.parametrize("name", WAITING)
def test_waiting_ops_warn_in_warn_mode_and_still_compute(name: str, sync_debug) -> None:
    got, reported = run_in_warn_mode(WAITING[name], sync_debug)
    assert reported, f"{name} waited for the device without a report"
    assert_same(got, WAITING[name](X))


@pytest.mark.parametrize("name", WAITING)
def test_waiting_ops_raise_in_error_mode_and_the_device_goes_on(name: str, sync_debug) -> None:
    fn = WAITING[name]
    x = on_device(X)
    sync_debug(2)
    with pytest.raises(RuntimeError, match=REPORT):
        fn(x)
    sync_debug(0)
    assert_same(fn(x), fn(X))


@pytest.mark.parametrize("name", NOT_WAITING)
def test_asynchronous_work_and_explicit_waits_are_not_reported(name: str, sync_debug) -> None:
    got, reported = run_in_warn_mode(NOT_WAITING[name], sync_debug)
    assert reported == []
    if got is not None:
        assert_same(got, NOT_WAITING[name](X))


def test_default_mode_reports_nothing() -> None:
    x = on_device(X)
    assert torch.sunrise.get_sync_debug_mode() == 0
    for fn in WAITING.values():
        assert reports(lambda: fn(x))[1] == []


def test_modes_by_name_and_number(sync_debug) -> None:
    for mode, value in (("warn", 1), ("error", 2), ("default", 0), (1, 1), (0, 0)):
        sync_debug(mode)
        assert torch.sunrise.get_sync_debug_mode() == value
    with pytest.raises(RuntimeError, match="expected one of `default`, `warn`, `error`"):
        sync_debug("loud")
    with pytest.raises(RuntimeError, match="invalid value of debug_mode"):
        sync_debug(3)
    assert torch.sunrise.get_sync_debug_mode() == 0


def test_a_training_step_reports_only_its_loss_read(sync_debug) -> None:
    """What the mode is for: the loop's one wait per step is `loss.item()`."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.GELU(), torch.nn.Linear(8, 2)).to("sunrise")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = on_device(X), on_device(torch.tensor([0, 1]))

    def step() -> float:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # first calls with these shapes may wait once (errors at the call)
    sync_debug("warn")
    _, reported = reports(step)
    assert len(reported) == 1 and "Tensor.item()" in reported[0], reported
