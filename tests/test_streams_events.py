"""Streams and events: torch.sunrise.current_stream/default_stream/set_stream/
stream(), the generic torch.Stream / torch.Event on sunrise, and ordering of
work between streams."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.testing import assert_close

N = 1 << 18  # big enough that copies are still in flight when the host moves on


def test_current_and_default_stream() -> None:
    cur = torch.sunrise.current_stream()
    default = torch.sunrise.default_stream()
    assert cur == default
    assert isinstance(cur, torch.Stream)
    assert cur.device == torch.device("sunrise", 0)
    assert cur.device_type == default.device_type
    assert cur.stream_id == 0
    assert torch.sunrise.current_stream("sunrise:0") == cur
    assert torch.sunrise.current_stream(torch.device("sunrise", 0)) == cur
    assert torch.accelerator.current_stream() == cur


@pytest.mark.two_devices
def test_streams_are_per_device() -> None:
    s0 = torch.sunrise.default_stream(0)
    s1 = torch.sunrise.default_stream(1)
    assert s1.device == torch.device("sunrise", 1)
    assert s0 != s1
    side1 = torch.Stream(device="sunrise:1")
    torch.sunrise.set_stream(side1)
    assert torch.sunrise.current_stream(1) == side1
    assert torch.sunrise.current_stream(0) == s0  # device 0 unaffected
    with torch.sunrise.device(1):
        assert torch.sunrise.current_stream() == side1
    torch.sunrise.set_stream(s1)
    assert torch.sunrise.current_stream(1) == s1


def test_set_stream_and_restore() -> None:
    s = torch.Stream(device="sunrise")
    assert s != torch.sunrise.default_stream()
    torch.sunrise.set_stream(s)
    assert torch.sunrise.current_stream() == s
    c = torch.randn(N)
    d = c.to("sunrise")  # copies run on the current stream
    torch.sunrise.set_stream(torch.sunrise.default_stream())
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()
    torch.sunrise.current_stream().wait_stream(s)
    assert_close(d.cpu(), c)
    torch.sunrise.set_stream(None)  # no-op
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()


def test_stream_context_manager_nests_and_restores() -> None:
    a = torch.Stream(device="sunrise")
    b = torch.Stream(device="sunrise")
    default = torch.sunrise.default_stream()
    with torch.sunrise.stream(a):
        assert torch.sunrise.current_stream() == a
        with torch.sunrise.stream(b):
            assert torch.sunrise.current_stream() == b
        assert torch.sunrise.current_stream() == a
        with torch.sunrise.stream(None):  # no-op
            assert torch.sunrise.current_stream() == a
    assert torch.sunrise.current_stream() == default


@pytest.mark.two_devices
def test_stream_context_on_another_device_switches_device() -> None:
    s1 = torch.Stream(device="sunrise:1")
    c = torch.randn(16)
    with torch.sunrise.stream(s1):
        assert torch.sunrise.current_device() == 1
        assert torch.sunrise.current_stream() == s1
        d = c.to("sunrise")
    assert torch.sunrise.current_device() == 0
    assert torch.sunrise.current_stream(1) == torch.sunrise.default_stream(1)
    assert d.device == torch.device("sunrise", 1)
    assert_close(d.cpu(), c)


def test_torch_stream_as_context_manager() -> None:
    s = torch.Stream(device="sunrise")
    with s:
        assert torch.sunrise.current_stream() == s
        assert torch.accelerator.current_stream() == s
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()


def test_accelerator_set_stream() -> None:
    s = torch.Stream(device="sunrise")
    torch.accelerator.set_stream(s)
    try:
        assert torch.sunrise.current_stream() == s
    finally:
        torch.accelerator.set_stream(torch.sunrise.default_stream())
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()


def test_stream_query_and_synchronize() -> None:
    s = torch.Stream(device="sunrise")
    assert s.query()  # nothing queued
    c = torch.randn(N)
    pinned = c.pin_memory()
    d = torch.empty(N, device="sunrise")
    with torch.sunrise.stream(s):
        d.copy_(pinned, non_blocking=True)
    s.synchronize()
    assert s.query()
    assert_close(d.cpu(), c)


def test_high_priority_stream() -> None:
    s = torch.Stream(device="sunrise", priority=-1)
    c = torch.randn(1024)
    with torch.sunrise.stream(s):
        d = c.to("sunrise")
        e = torch.sin(d)
    torch.sunrise.current_stream().wait_stream(s)
    assert_close(e.cpu(), torch.sin(c))


def test_side_stream_work_with_wait_stream_is_ordered() -> None:
    src = torch.arange(float(N))
    x = torch.zeros(N, device="sunrise")
    x.fill_(-1.0)  # queued on the default stream
    s = torch.Stream(device="sunrise")
    s.wait_stream(torch.sunrise.current_stream())  # the side stream starts after the fill
    with torch.sunrise.stream(s):
        x.copy_(src.to("sunrise"))
        y = torch.empty_like(x)
        y.copy_(x)
    torch.sunrise.current_stream().wait_stream(s)  # the default stream waits for the side work
    z = torch.empty_like(y)
    z.copy_(y)
    w = torch.cumsum(z, 0)
    assert_close(z.cpu(), src)
    assert_close(w.cpu(), torch.cumsum(src, 0))


def test_two_side_streams_joined_by_the_main_stream() -> None:
    a_src, b_src = torch.randn(N), torch.randn(N)
    s1, s2 = torch.Stream(device="sunrise"), torch.Stream(device="sunrise")
    with torch.sunrise.stream(s1):
        a = a_src.to("sunrise")
    with torch.sunrise.stream(s2):
        b = b_src.to("sunrise")
    main = torch.sunrise.current_stream()
    main.wait_stream(s1)
    main.wait_stream(s2)
    assert_close((a + b).cpu(), a_src + b_src)


def test_event_record_synchronize_query() -> None:
    e = torch.Event(device="sunrise")
    assert e.query()  # never recorded: complete
    c = torch.randn(N)
    pinned = c.pin_memory()
    d = torch.empty(N, device="sunrise")
    d.copy_(pinned, non_blocking=True)
    e.record()
    e.synchronize()
    assert e.query()
    assert_close(d.cpu(), c)


def test_event_timing() -> None:
    start = torch.Event(device="sunrise", enable_timing=True)
    end = torch.Event(device="sunrise", enable_timing=True)
    c = torch.randn(256, 256)
    start.record()
    d = c.to("sunrise")
    e = torch.empty_like(d)
    e.copy_(d)
    end.record()
    end.synchronize()
    elapsed = start.elapsed_time(end)
    assert isinstance(elapsed, float) and elapsed >= 0.0
    assert_close(e.cpu(), c)


def test_event_orders_streams() -> None:
    src = torch.arange(float(N))
    s = torch.Stream(device="sunrise")
    with torch.sunrise.stream(s):
        x = src.to("sunrise")
        y = torch.empty_like(x)
        y.copy_(x)
        ready = torch.Event(device="sunrise")
        ready.record()  # on s
    torch.sunrise.current_stream().wait_event(ready)
    z = torch.empty_like(y)
    z.copy_(y)
    assert_close(z.cpu(), src)
    # Stream.record_event and Event.wait(stream) spellings.
    ev = s.record_event()
    ev.wait(torch.sunrise.current_stream())
    ev.synchronize()
    assert ev.query() and s.query()


@pytest.mark.two_devices
def test_events_and_streams_on_device_1() -> None:
    s1 = torch.Stream(device="sunrise:1")
    start = torch.Event(device="sunrise:1", enable_timing=True)
    end = torch.Event(device="sunrise:1", enable_timing=True)
    c = torch.randn(N)
    with torch.sunrise.stream(s1):
        start.record()
        d = c.to("sunrise:1")
        end.record()
    end.synchronize()
    assert start.elapsed_time(end) >= 0.0
    torch.sunrise.current_stream(1).wait_stream(s1)
    assert_close(d.cpu(), c)


def test_current_stream_and_device_are_per_thread() -> None:
    s = torch.Stream(device="sunrise")
    seen = {}

    def worker() -> None:
        seen["initial"] = torch.sunrise.current_stream()
        torch.sunrise.set_stream(s)
        seen["set"] = torch.sunrise.current_stream()
        if torch.sunrise.device_count() > 1:
            torch.sunrise.set_device(1)
        seen["device"] = torch.sunrise.current_device()
        c = torch.randn(64)
        d = c.to("sunrise")
        seen["ok"] = torch.equal(d.cpu(), c)

    t = threading.Thread(target=worker)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    assert seen["initial"] == torch.sunrise.default_stream()
    assert seen["set"] == s
    assert seen["ok"]
    # The main thread is unaffected.
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()
    assert torch.sunrise.current_device() == 0


def test_torch_sunrise_stream_and_event_classes() -> None:
    s = torch.sunrise.Stream()
    start = torch.sunrise.Event(enable_timing=True)
    end = torch.sunrise.Event(enable_timing=True)
    c = torch.randn(1024)
    with torch.sunrise.stream(s):
        start.record()
        d = c.to("sunrise")
        end.record()
    end.synchronize()
    assert start.elapsed_time(end) >= 0.0
    torch.sunrise.current_stream().wait_stream(s)
    assert_close(d.cpu(), c)
