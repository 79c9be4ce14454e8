"""The boxed CPU fallback: ops without sunrise kernels run ATen's CPU kernel, correctly and in
stream order: queued as device work when their Meta kernel sizes the outputs, otherwise
synchronously on the host; its counters, reasons and modes (warn / silent / error,
SUNRISE_FALLBACK).

Which ops fall back changes as kernels are added: the op tests (tests/ops/) compare results
whichever way an op runs; here are the fallback's own guarantees.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import describe

X = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
# Ops that take the synchronous path: no Meta kernel can size their outputs.
COUNTS = torch.tensor([0, 3, 1, 3, 7, 2])


def sync_op(t: torch.Tensor) -> torch.Tensor:
    return torch.bincount(t)


def other_sync_op(t: torch.Tensor) -> torch.Tensor:
    return torch.unique_consecutive(t)


# ------------------------------------------------------- stream ordering


def test_ops_after_a_device_copy_see_the_copied_values() -> None:
    n = 1 << 18
    src = torch.arange(float(n))
    a = torch.zeros(n, device="sunrise")
    b = src.to("sunrise")
    a.copy_(b)  # queued device-to-device copy
    assert_close(torch.cumsum(a, 0).cpu(), torch.cumsum(src, 0))
    b.fill_(1.0)  # queued fill, then a fallback op reading it
    assert_close(torch.sin(b).cpu(), torch.sin(torch.ones(n)))
    # A strided (device work) copy followed by a fallback op.
    m = torch.zeros(512, 512, device="sunrise")
    m.copy_(src.view(512, 512).to("sunrise").t())
    assert_close(m.sum(0).cpu(), src.view(512, 512).t().sum(0))


def test_ops_after_non_blocking_pinned_copy_see_the_values() -> None:
    src = torch.randn(1 << 16)
    pinned = src.pin_memory()
    d = torch.empty(1 << 16, device="sunrise")
    d.copy_(pinned, non_blocking=True)
    assert_close(torch.exp(d).cpu(), torch.exp(src))


def test_fallback_results_are_ready_for_later_device_work() -> None:
    c = torch.randn(256, 256)
    d = c.to("sunrise")
    s = torch.sin(d)
    t = torch.empty_like(s)
    t.copy_(s)  # device copy of a fallback result
    assert_close(t.cpu(), torch.sin(c))


@pytest.mark.two_devices
def test_stream_order_across_devices() -> None:
    n = 1 << 18
    src = torch.arange(float(n))
    d0 = src.to("sunrise:0")
    d1 = torch.zeros(n, device="sunrise:1")
    d1.copy_(d0)  # peer copy on device 1's stream after device 0 produced d0
    d0.fill_(0.0)  # later work on the source's stream must not overtake the copy
    assert_close(torch.cumsum(d1, 0).cpu(), torch.cumsum(src, 0))
    assert_close(d0.sum().cpu(), torch.tensor(0.0))


def test_fallback_on_a_side_stream_sees_that_streams_work() -> None:
    n = 1 << 18
    src = torch.arange(float(n))
    x = torch.zeros(n, device="sunrise")
    s = torch.Stream(device="sunrise")
    s.wait_stream(torch.sunrise.current_stream())
    with torch.sunrise.stream(s):
        x.copy_(src.to("sunrise"))
        y = torch.cumsum(x, 0)  # runs after the copy queued on s
    torch.sunrise.current_stream().wait_stream(s)
    assert_close(y.cpu(), torch.cumsum(src, 0))


# ------------------------------------------------------- stats and modes


def test_fallback_stats_count_calls(fallback_mode) -> None:
    fallback_mode("silent")
    d = COUNTS.to("sunrise")
    assert torch_sunrise.fallback_stats() == {}
    for _ in range(3):
        sync_op(d)
    other_sync_op(d)
    stats = torch_sunrise.fallback_stats()
    assert stats == {"aten::bincount": 3, "aten::unique_consecutive": 1}, stats
    reasons = torch_sunrise.fallback_reasons()
    assert set(reasons) == set(stats) and all("Meta kernel" in r for r in reasons.values()), reasons
    times = torch_sunrise.fallback_times()
    assert set(times) == set(stats)
    for name, (calls, seconds) in times.items():
        assert calls == stats[name] and seconds >= 0.0
    # Ops with sunrise kernels are not counted.
    torch_sunrise.reset_fallback_stats()
    e = torch.empty(4, device="sunrise")
    e.fill_(1.0)
    e.zero_()
    e.copy_(torch.ones(4))
    assert_close(e.cpu(), torch.ones(4))
    assert torch_sunrise.fallback_stats() == {}


def test_error_mode_raises_naming_the_op(fallback_mode) -> None:
    fallback_mode("error")
    assert torch_sunrise.get_fallback_mode() == "error"
    d = COUNTS.to("sunrise")  # copies have kernels: allowed
    with pytest.raises(NotImplementedError, match=r"aten::bincount") as info:
        sync_op(d)
    assert "SUNRISE_FALLBACK" in str(info.value) and "no Meta kernel" in str(info.value)
    with pytest.raises(NotImplementedError, match=r"aten::unique_consecutive"):
        other_sync_op(d)
    assert torch_sunrise.fallback_stats() == {}
    # Queued ops are device work: allowed.
    assert_close(torch.histc(X.to("sunrise"), bins=4).cpu(), torch.histc(X, bins=4))
    # Core ops with kernels keep working.
    e = torch.empty(6, dtype=torch.long, device="sunrise")
    e.copy_(d)
    e.fill_(2)
    assert_close(e.cpu(), torch.full((6,), 2))
    assert_close(d.cpu(), COUNTS)
    fallback_mode("silent")
    assert_close(sync_op(d).cpu(), sync_op(COUNTS))


def test_warn_mode_warns_once_per_op(fallback_mode) -> None:
    fallback_mode("warn")
    d = COUNTS.to("sunrise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = sync_op(d)
        b = sync_op(d)
        c = other_sync_op(d)
        torch.histc(X.to("sunrise"), bins=4)  # queued: no warning
    messages = [str(w.message) for w in caught if "no sunrise kernel" in str(w.message)]
    assert len([m for m in messages if "aten::bincount" in m]) == 1, messages
    assert len([m for m in messages if "aten::unique_consecutive" in m]) == 1, messages
    assert len(messages) == 2, messages
    assert_close(a.cpu(), sync_op(COUNTS))
    assert_close(b.cpu(), sync_op(COUNTS))
    assert_close(c.cpu(), other_sync_op(COUNTS))
    # reset_fallback_stats re-arms the warnings.
    torch_sunrise.reset_fallback_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sync_op(d)
    assert any("aten::bincount" in str(w.message) for w in caught)


def test_silent_mode_does_not_warn(fallback_mode) -> None:
    fallback_mode("silent")
    d = COUNTS.to("sunrise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = sync_op(d)
    assert not [w for w in caught if "no sunrise kernel" in str(w.message)]
    assert_close(r.cpu(), sync_op(COUNTS))
    assert torch_sunrise.fallback_stats() == {"aten::bincount": 1}


def test_invalid_mode_is_rejected() -> None:
    before = torch_sunrise.get_fallback_mode()
    with pytest.raises(ValueError, match="warn"):
        torch_sunrise.set_fallback_mode("loud")
    assert torch_sunrise.get_fallback_mode() == before


def test_env_var_error_mode_in_subprocess(run_python) -> None:
    proc = run_python(
        """
        import torch, torch_sunrise
        assert torch_sunrise.get_fallback_mode() == "error", torch_sunrise.get_fallback_mode()
        d = torch.tensor([0, 1, 1, 3]).to("sunrise")
        try:
            torch.bincount(d)
        except NotImplementedError as e:
            print("raised:", str(e).splitlines()[0])
        else:
            raise SystemExit("no error")
        torch_sunrise.set_fallback_mode("silent")  # the API overrides the variable
        print("after:", torch.bincount(d).cpu().tolist())
        """,
        env={"SUNRISE_FALLBACK": "error"},
    )
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("raised:") and "aten::bincount" in lines[0], describe(proc)
    values = [int(v) for v in lines[1].split(":", 1)[1].strip(" []").split(",")]
    assert values == torch.bincount(torch.tensor([0, 1, 1, 3])).tolist()


def test_env_var_silent_and_default_warn_in_subprocess(run_python) -> None:
    code = """
        import warnings, torch, torch_sunrise
        d = torch.tensor([0, 1, 1, 3]).to("sunrise")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.bincount(d); torch.bincount(d)
        print(torch_sunrise.get_fallback_mode(), sum("no sunrise kernel" in str(w.message) for w in caught))
    """
    silent = run_python(code, env={"SUNRISE_FALLBACK": "silent"})
    default = run_python(code)
    assert silent.returncode == 0, describe(silent)
    assert default.returncode == 0, describe(default)
    assert silent.stdout.split() == ["silent", "0"]
    assert default.stdout.split() == ["warn", "1"]
