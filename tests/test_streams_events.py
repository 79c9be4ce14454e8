"""Streams and events: torch.sunrise.current_stream/default_stream/set_stream/
stream(), the generic torch.Stream / torch.Event on sunrise, and ordering of
work between streams."""

from __future__ import annotations

import os
import threading
import time

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


# --------------------------------------------------------------------------
# torch.sunrise.Stream / Event behave like torch.cuda's

MiB = 1 << 20


def _busy(stream: torch.Stream, seconds: float = 0.15) -> torch.Tensor:
    """Queue about ``seconds`` of native device work (64 MiB memsets) on ``stream``."""
    with torch.sunrise.stream(stream):
        buf = torch.empty(64 * MiB, dtype=torch.uint8, device=stream.device)
        buf.fill_(0)
    stream.synchronize()
    start = time.perf_counter()
    with torch.sunrise.stream(stream):
        buf.fill_(1)
    stream.synchronize()
    one = max(time.perf_counter() - start, 1e-4)
    with torch.sunrise.stream(stream):
        for i in range(min(300, int(seconds / one) + 1)):
            buf.fill_(i % 200)
    return buf


def test_stream_priority_and_priority_range() -> None:
    assert torch.sunrise.Stream.priority_range() == (0, -1)
    high = torch.sunrise.Stream(priority=-1)
    normal = torch.sunrise.Stream()
    assert high.priority == -1 and normal.priority == 0
    assert torch.sunrise.default_stream().priority == 0
    assert torch.sunrise.Stream(priority=-5).priority == -1  # clamped to the highest priority
    assert torch.sunrise.Stream(priority=3).priority == 0  # clamped to the lowest
    assert torch.Stream(device="sunrise", priority=-1).stream_id != normal.stream_id
    with torch.sunrise.stream(high):
        cur = torch.sunrise.current_stream()
        assert cur.priority == -1 and cur == high
    # a high-priority stream does real work
    c = torch.randn(4096)
    with torch.sunrise.stream(high):
        d = c.to("sunrise")
        e = torch.empty_like(d)
        e.copy_(d)
    torch.sunrise.current_stream().wait_stream(high)
    assert_close(e.cpu(), c)


def test_stream_device_argument_forms() -> None:
    assert torch.sunrise.Stream().device == torch.device("sunrise", 0)
    assert torch.sunrise.Stream(device=-1).device == torch.device("sunrise", 0)  # negative: current device
    assert torch.sunrise.Stream(0).device == torch.device("sunrise", 0)
    if torch.sunrise.device_count() > 1:
        assert torch.sunrise.Stream(1).device == torch.device("sunrise", 1)
        assert torch.sunrise.Stream("sunrise:1").device == torch.device("sunrise", 1)
        assert torch.sunrise.Stream(torch.device("sunrise", 1), priority=-1).priority == -1
        with torch.sunrise.device(1):
            assert torch.sunrise.Stream().device == torch.device("sunrise", 1)
            assert torch.sunrise.current_stream().device == torch.device("sunrise", 1)
    with pytest.raises(ValueError):
        torch.sunrise.Stream("cpu")


def test_stream_equality_hash_and_repr() -> None:
    a, b = torch.sunrise.Stream(), torch.sunrise.Stream()
    assert a != b  # consecutive pool streams differ (the pools hand out 32 streams round-robin)
    same = torch.sunrise.Stream(stream_id=a.stream_id, device_index=a.device_index, device_type=a.device_type)
    assert same == a and hash(same) == hash(a)
    assert torch.sunrise.current_stream() == torch.sunrise.current_stream()
    assert hash(torch.sunrise.current_stream()) == hash(torch.sunrise.default_stream())
    # the generic torch.Stream naming the same stream is the same stream
    generic = torch.accelerator.current_stream()
    assert generic == torch.sunrise.current_stream() and hash(generic) == hash(torch.sunrise.current_stream())
    table = {torch.sunrise.default_stream(): "default", a: "a"}
    assert table[torch.sunrise.current_stream()] == "default" and table[same] == "a"
    assert a != "a stream" and a != 0
    r = repr(a)
    assert r.startswith("<torch.sunrise.Stream") and "sunrise:0" in r and "priority=0" in r
    assert f"{a.sunrise_stream:#x}" in r
    assert a.sunrise_stream != torch.sunrise.default_stream().sunrise_stream
    assert a.sunrise_stream == a.native_handle
    assert isinstance(torch.sunrise.current_stream(), torch.sunrise.Stream)


def test_stream_query_synchronize_and_wait_stream_are_asynchronous() -> None:
    side = torch.sunrise.Stream()
    main = torch.sunrise.current_stream()
    src = torch.arange(float(N))
    buf = _busy(side)
    with torch.sunrise.stream(side):
        x = torch.empty(N, device="sunrise")
        x.copy_(src.pin_memory(), non_blocking=True)  # behind the busy work
    assert not side.query()
    t0 = time.perf_counter()
    main.wait_stream(side)  # returns at once; only later work on main waits
    assert time.perf_counter() - t0 < 0.05
    assert not side.query()
    y = torch.empty_like(x)
    y.copy_(x)  # on main: must see the side stream's copy
    assert not main.query()  # main now waits for side
    main.synchronize()
    assert main.query() and side.query()
    assert_close(y.cpu(), src)
    del buf


def test_record_event_returns_a_sunrise_event_and_times_work() -> None:
    s = torch.sunrise.Stream()
    start = s.record_event(torch.sunrise.Event(enable_timing=True))
    assert isinstance(start, torch.sunrise.Event)
    t0 = time.perf_counter()
    buf = _busy(s, 0.1)
    end = torch.sunrise.Event(enable_timing=True)
    assert s.record_event(end) is end
    plain = s.record_event()
    assert isinstance(plain, torch.sunrise.Event) and not plain.enable_timing
    end.synchronize()
    wall_ms = (time.perf_counter() - t0) * 1000
    elapsed = start.elapsed_time(end)
    assert 5.0 < elapsed <= wall_ms + 5.0, (elapsed, wall_ms)
    assert plain.query()
    with pytest.raises(Exception, match="timing"):
        start.elapsed_time(plain)  # plain events record no timestamps (as CUDA's)
    del buf


def test_event_record_and_wait_default_to_the_current_stream() -> None:
    s = torch.sunrise.Stream()
    buf = _busy(s)
    e = torch.sunrise.Event()
    with torch.sunrise.stream(s):
        e.record()  # on s, the current stream
    assert not e.query()
    main = torch.sunrise.current_stream()
    e.wait()  # the current (default) stream waits for e
    marker = torch.zeros(4, device="sunrise")
    marker.fill_(1.0)
    assert not main.query()
    e.synchronize()
    assert e.query()
    main.synchronize()
    assert marker.cpu().tolist() == [1.0] * 4
    # Stream.wait_event with both event kinds
    generic = torch.Event(device="sunrise")
    generic.record(s)
    main.wait_event(generic)
    main.wait_event(s.record_event())
    main.synchronize()
    assert s.query()
    del buf


def test_event_flags_and_repr() -> None:
    e = torch.sunrise.Event(enable_timing=True, blocking=True)
    assert e.enable_timing and e.blocking
    assert repr(e) == "<torch.sunrise.Event uninitialized>" and e.sunrise_event == 0
    e.record()
    assert e.sunrise_event != 0 and f"{e.sunrise_event:#x}" in repr(e)
    e.synchronize()
    assert e.query()
    with pytest.raises(ValueError):
        torch.sunrise.Event(interprocess=True)
    with pytest.raises(ValueError, match="recorded"):
        torch.sunrise.Event(enable_timing=True).elapsed_time(e)


def test_stream_context_restores_after_an_exception() -> None:
    s = torch.sunrise.Stream()
    with pytest.raises(RuntimeError, match="boom"):
        with torch.sunrise.stream(s):
            assert torch.sunrise.current_stream() == s
            raise RuntimeError("boom")
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()
    ctx = torch.sunrise.StreamContext(s)
    with ctx:
        assert torch.sunrise.current_stream() == s
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()


@pytest.mark.two_devices
def test_stream_context_on_device_1_keeps_device_0_stream() -> None:
    side0 = torch.sunrise.Stream(0)
    side1 = torch.sunrise.Stream(1)
    with torch.sunrise.stream(side0):
        with torch.sunrise.stream(side1):
            assert torch.sunrise.current_device() == 1
            assert torch.sunrise.current_stream() == side1
            assert torch.sunrise.current_stream(0) == side0
        assert torch.sunrise.current_device() == 0
        assert torch.sunrise.current_stream() == side0
        assert torch.sunrise.current_stream(1) == torch.sunrise.default_stream(1)
    assert torch.sunrise.current_stream(0) == torch.sunrise.default_stream(0)


def test_device_synchronize_waits_for_every_stream() -> None:
    a, b = torch.sunrise.Stream(), torch.sunrise.Stream()
    bufs = [_busy(a, 0.08), _busy(b, 0.08)]
    assert not (a.query() and b.query())
    torch.sunrise.synchronize()
    assert a.query() and b.query()
    del bufs


def test_all_public_stream_names_are_exported() -> None:
    from torch_sunrise.sunrise import streams

    for name in streams.__all__:
        obj = getattr(torch.sunrise, name)
        assert obj.__doc__, name
    for name in ("priority", "priority_range", "wait_event", "wait_stream", "record_event", "query",
                 "synchronize", "sunrise_stream"):
        assert hasattr(torch.sunrise.Stream, name), name
    for name in ("record", "wait", "query", "synchronize", "elapsed_time", "sunrise_event"):
        assert hasattr(torch.sunrise.Event, name), name


def test_sleep_keeps_the_stream_busy_without_a_core() -> None:
    """torch.sunrise._sleep, torch.cuda._sleep's counterpart: the stream is busy for that many cycles (1 GHz)."""
    stream = torch.sunrise.current_stream()
    start, end = torch.sunrise.Event(enable_timing=True), torch.sunrise.Event(enable_timing=True)
    cpu_before = time.process_time()
    start.record()
    torch.sunrise._sleep(100_000_000)
    end.record()
    assert not stream.query()
    end.synchronize()
    assert start.elapsed_time(end) >= 95
    # The device thread sleeps: the process spends far less CPU time than the 100 ms.
    assert time.process_time() - cpu_before < 0.05


def test_device_threads_are_named_for_tools() -> None:
    """top -H, perf and py-spy show a stream's device thread (and the OpenMP workers it starts) by device."""
    stream = torch.sunrise.Stream(device=1)
    with torch.sunrise.stream(stream):
        torch.ones(4, device="sunrise:1").add_(1)
    stream.synchronize()
    names = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.add(f.read().strip())
        except OSError:  # a thread that ended meanwhile
            pass
    assert "sunrise1:stream" in names
