"""torch.profiler on sunrise: device work on lanes per device and stream, linked
to the ops that launched it; the legacy ``use_device="sunrise"`` profiler; and
the memory history (``torch.sunrise.memory._record_memory_history``) that
PyTorch's memory visualizer reads."""
from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

D = "sunrise"
DEVICE_TYPES = ("kernel", "gpu_memcpy", "gpu_memset")


def _tiny_gpt2() -> tuple[torch.nn.Module, torch.Tensor]:
    transformers = pytest.importorskip("transformers")
    # No dropout: CPU and sunrise draw different random numbers (Philox on the device).
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=32, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg), torch.randint(0, cfg.vocab_size, (2, 16))


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor) -> torch.Tensor:
    loss = model(ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.detach()


def _trace(prof: profile, tmp_path: Path) -> dict:
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    return json.loads(path.read_text())


def _trace_events(prof: profile, tmp_path: Path) -> list[dict]:
    return _trace(prof, tmp_path)["traceEvents"]


@pytest.fixture(scope="module")
def gpt2_step_profile(tmp_path_factory: pytest.TempPathFactory):
    """One profiled GPT-2 training step on sunrise, after a warm-up step; and
    the same steps on CPU and unprofiled on sunrise, for the numbers."""
    model, ids = _tiny_gpt2()
    runs = {}
    for name, device, profiled in (("cpu", "cpu", False), ("plain", D, False), ("profiled", D, True)):
        m = copy.deepcopy(model).to(device)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        x = ids.to(device)
        _train_step(m, opt, x)  # warm-up: optimizer state, first-call caches
        if profiled:
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
                loss = _train_step(m, opt, x)
        else:
            prof, loss = None, _train_step(m, opt, x)
        runs[name] = (loss.cpu(), [p.detach().cpu() for p in m.parameters()], prof)
    events = _trace_events(runs["profiled"][2], tmp_path_factory.mktemp("trace"))
    return runs, events


def test_profiling_does_not_change_the_numbers(gpt2_step_profile) -> None:
    runs, _ = gpt2_step_profile
    for name in ("plain", "profiled"):
        torch.testing.assert_close(runs[name][0], runs["cpu"][0], rtol=0, atol=0)
        for got, expected in zip(runs[name][1], runs["cpu"][1]):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_device_work_has_device_time_per_op(gpt2_step_profile) -> None:
    runs, _ = gpt2_step_profile
    prof = runs["profiled"][2]
    averages = {a.key: a for a in prof.key_averages()}
    for op in ("aten::mm", "aten::addmm"):
        assert averages[op].device_time_total > 0, op
        assert averages[op].self_device_time_total > 0, op
    # the device work itself is listed, named after its op
    assert any(k.startswith("sunrise::") and "aten::addmm" in k for k in averages)
    # and the launch calls, on the host
    assert averages["srLaunchHostFunc"].count > 0 or averages["srLaunchKernel"].count > 0
    # every op that ran device work has it as a child event on the sunrise device
    device_events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.PrivateUse1]
    assert device_events and all(e.device_index == 0 for e in device_events)
    table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=5)
    assert "Self SUNRISE" in table or "Self Device" in table, table


def test_trace_has_device_lanes_linked_to_their_ops(gpt2_step_profile) -> None:
    _, events = gpt2_step_profile
    device = [e for e in events if e.get("cat") in DEVICE_TYPES and e.get("ph") == "X"]
    ops = {e["args"].get("External id"): e for e in events if e.get("cat") == "cpu_op" and "args" in e}
    assert len(device) > 100
    lanes = {(e["pid"], e["tid"]) for e in device}
    assert (0, 0) in lanes  # sunrise:0, default stream
    # lane names, as the trace viewer shows them
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("ph") == "M" and e["name"] == "thread_name"}
    assert names.get((0, 0)) == "sunrise:0 stream 0"
    # each device event names its op and the op is in the trace with the same correlation
    linked = [e for e in device if e["args"].get("External id") in ops]
    assert len(linked) >= 0.95 * len(device)
    mm = [e for e in linked if e["name"] == "sunrise::task<aten::mm>" or e["name"] == "sunrise::kernel<aten::mm>"]
    assert mm and all(ops[e["args"]["External id"]]["name"] == "aten::mm" for e in mm)
    # flow arrows from each launch call to its device work
    flows = [e for e in events if e.get("cat") == "ac2g"]
    starts = {e["id"] for e in flows if e["ph"] == "s"}
    ends = {e["id"] for e in flows if e["ph"] == "f"}
    assert len(starts & ends) >= 0.95 * len(device)


def test_device_events_lie_in_launch_order_within_a_stream(gpt2_step_profile) -> None:
    _, events = gpt2_step_profile
    device = [e for e in events if e.get("cat") in DEVICE_TYPES and e.get("ph") == "X"]
    launches = {}
    for e in events:
        if e.get("cat") == "ac2g" and e["ph"] == "s":
            launches[e["id"]] = e["ts"]
    ends_by_flow = {e["id"]: e for e in events if e.get("cat") == "ac2g" and e["ph"] == "f"}
    by_lane: dict[tuple, list[dict]] = {}
    for e in device:
        by_lane.setdefault((e["pid"], e["tid"]), []).append(e)
    for lane, work in by_lane.items():
        work.sort(key=lambda e: e["ts"])
        for a, b in zip(work, work[1:]):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-3, (lane, a, b)  # one stream runs one thing at a time
    # and in the order they were launched
    flow_ts = sorted((f["ts"], launches[i]) for i, f in ends_by_flow.items() if i in launches)
    assert [launch for _, launch in flow_ts] == sorted(launch for _, launch in flow_ts)


def test_trace_names_the_devices(tmp_path: Path) -> None:
    x = torch.randn(8, device=D)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
        (x + 1).sum().item()
    props = _trace(prof, tmp_path)["deviceProperties"]
    assert [p["id"] for p in props] == list(range(torch.sunrise.device_count()))
    expected = torch.sunrise.get_device_properties(0)
    assert props[0]["name"] == expected.name and props[0]["totalGlobalMem"] == expected.total_memory


def test_streams_get_their_own_lanes(tmp_path: Path) -> None:
    side = torch.sunrise.Stream()
    x = torch.randn(256, 256, device=D)
    torch.sunrise.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
        y = x @ x
        with torch.sunrise.stream(side):
            z = x + 1
        torch.sunrise.synchronize()
    events = _trace_events(prof, tmp_path)
    device = [e for e in events if e.get("cat") in DEVICE_TYPES and e.get("ph") == "X"]
    lanes = {e["name"]: (e["pid"], e["tid"]) for e in device}
    assert lanes["sunrise::task<aten::mm>"] == (0, 0) or lanes.get("sunrise::kernel<aten::mm>") == (0, 0)
    add_lane = lanes.get("sunrise::task<aten::add>") or lanes.get("sunrise::kernel<aten::add>")
    assert add_lane == (0, side.stream_id)
    torch.testing.assert_close(y.cpu(), x.cpu() @ x.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(z.cpu(), x.cpu() + 1, rtol=0, atol=0)


def test_copies_and_fallback_ops_are_marked(tmp_path: Path, fallback_mode) -> None:
    fallback_mode("silent")
    host = torch.randn(1 << 16).pin_memory()
    ints = torch.randint(0, 10, (64,))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
        d = host.to(D, non_blocking=True)
        back = d.cpu()
        counts = torch.bincount(ints.to(D))  # no sunrise kernel: the CPU fallback
        torch.sunrise.synchronize()
    events = _trace_events(prof, tmp_path)
    names = {e["name"] for e in events if e.get("cat") == "gpu_memcpy"}
    assert "Memcpy HtoD (Host -> Device)" in names and "Memcpy DtoH (Device -> Host)" in names
    fallback = [e for e in events if e.get("name") == "sunrise::cpu_fallback<aten::bincount>"]
    assert fallback and fallback[0]["cat"] == "user_annotation"
    torch.testing.assert_close(back, host, rtol=0, atol=0)
    torch.testing.assert_close(counts.cpu(), torch.bincount(ints), rtol=0, atol=0)


def test_cpu_only_profiling_traces_no_device_work(tmp_path: Path) -> None:
    x = torch.randn(64, 64, device=D)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        (x @ x).sum().item()
    events = _trace_events(prof, tmp_path)
    assert not [e for e in events if e.get("cat") in DEVICE_TYPES]
    assert any(e.get("name") == "aten::mm" for e in events)


@pytest.mark.parametrize("use_kineto", [True, False], ids=["kineto", "timing-events"])
def test_legacy_profiler_with_use_device(use_kineto: bool) -> None:
    x = torch.randn(128, 128, device=D, requires_grad=True)
    with torch.autograd.profiler.profile(use_device=D, record_shapes=True, use_kineto=use_kineto) as prof:
        y = (x @ x).relu().sum()
        y.backward()
        torch.sunrise.synchronize()
    averages = {a.key: a for a in prof.key_averages()}
    assert averages["aten::mm"].device_time_total > 0
    assert averages["aten::mm"].cpu_time_total > 0  # positive times, no internal assert
    assert all(a.cpu_time_total >= 0 for a in averages.values())
    x_cpu = x.detach().cpu().requires_grad_()
    (x_cpu @ x_cpu).relu().sum().backward()
    torch.testing.assert_close(x.grad.cpu(), x_cpu.grad, rtol=0, atol=0)


def test_graph_replays_show_their_nodes(tmp_path: Path) -> None:
    x = torch.randn(64, 64, device=D)
    g = torch.sunrise.SunriseGraph()
    s = torch.sunrise.Stream()
    with torch.sunrise.stream(s):
        (x @ x).relu()  # warm-up on the side stream
        torch.sunrise.synchronize()
        with torch.sunrise.graph(g):
            out = (x @ x).relu()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
        g.replay()
        torch.sunrise.synchronize()
    events = _trace_events(prof, tmp_path)
    nodes = [e for e in events if e.get("cat") == "kernel" and e.get("args", {}).get("graph node") == 1]
    assert len(nodes) >= 2
    torch.testing.assert_close(out.cpu(), (x.cpu() @ x.cpu()).relu(), rtol=0, atol=0)


def test_compiled_kernels_are_named_after_themselves(tmp_path: Path) -> None:
    torch._dynamo.reset()
    fn = torch.compile(lambda a, b: (a * b + 1).sin())
    x = torch.randn(1000, device=D)
    fn(x, x)  # compiles
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
        y = fn(x, x)
        torch.sunrise.synchronize()
    events = _trace_events(prof, tmp_path)
    work = [e["name"] for e in events if e.get("cat") in DEVICE_TYPES and e.get("ph") == "X"]
    assert any(n.startswith("sunrise::") and "cpp_fused" in n for n in work), work
    cpu = torch.compile(lambda a, b: (a * b + 1).sin())(x.cpu(), x.cpu())
    torch.testing.assert_close(y.cpu(), cpu, rtol=0, atol=0)


# --------------------------------------------------------------------------
# memory history


@pytest.fixture
def memory_history():
    torch.sunrise.memory._record_memory_history(max_entries=100_000)
    try:
        yield
    finally:
        torch.sunrise.memory._record_memory_history(enabled=None)


def test_memory_history_records_a_training_step(memory_history, tmp_path: Path) -> None:
    model, ids = _tiny_gpt2()
    model = model.to(D)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _train_step(model, opt, ids.to(D))
    snapshot = torch.sunrise.memory._snapshot()
    (trace, *others) = snapshot["device_traces"]
    actions = {e["action"] for e in trace}
    assert {"alloc", "free_requested", "free_completed", "segment_alloc"} <= actions
    # allocations carry the Python stack that made them: this test's frames among them
    this_file = Path(__file__).name
    allocs = [e for e in trace if e["action"] == "alloc"]
    assert allocs and all(e["frames"] for e in allocs[:50])
    assert any(this_file in f["filename"] for e in allocs for f in e["frames"])
    # live blocks too
    live = [b for s in snapshot["segments"] for b in s["blocks"] if b["state"] == "active_allocated"]
    assert live and any(b["frames"] for b in live)
    # the default stream is stream 0, as CUDA's null stream (the visualizer then shows no stream)
    assert {e["stream"] for e in trace} == {0}
    # the visualizer leaves out the frames that gather the stack
    assert not any("gather" in f["name"] and "torch_sunrise" in f["name"] and "gather_with_cpp" not in f["name"]
                   for e in allocs for f in e["frames"])
    # time goes forward and sizes are positive
    times = [e["time_us"] for e in trace]
    assert times == sorted(times) and all(e["size"] > 0 for e in allocs)
    # the file the visualizer opens
    path = tmp_path / "snapshot.pickle"
    torch.sunrise.memory._dump_snapshot(str(path))
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    assert loaded["device_traces"][0] and loaded["segments"]


def test_memory_visualizer_renders_a_sunrise_snapshot(memory_history) -> None:
    from torch.cuda import _memory_viz

    model, ids = _tiny_gpt2()
    model = model.to(D)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _train_step(model, opt, ids.to(D))
    snapshot = torch.sunrise.memory._snapshot()
    trace_html = _memory_viz.trace_plot(snapshot)
    segment_html = _memory_viz.segment_plot(snapshot)
    for html in (trace_html, segment_html):
        assert "<html" in html.lower() and len(html) > 10_000
    # the text views too
    assert "entries" in _memory_viz.trace(snapshot)
    summary = _memory_viz.segsum(snapshot)
    assert "segment" in summary.lower()


def test_memory_history_limits_and_off(memory_history) -> None:
    torch.sunrise.memory._record_memory_history(max_entries=10, clear_history=True)
    keep = [torch.empty(1000 + i, device=D) for i in range(30)]
    trace = torch.sunrise.memory._snapshot()["device_traces"][0]
    assert len(trace) == 10  # the newest ten
    assert trace[-1]["addr"] == keep[-1].data_ptr() and trace[-1]["action"] == "alloc"
    torch.sunrise.memory._record_memory_history(enabled="state")
    assert torch.sunrise.memory._snapshot()["device_traces"][0] == []
    t = torch.empty(123_457, device=D)
    (block,) = [b for s in torch.sunrise.memory_snapshot() for b in s["blocks"] if b["address"] == t.data_ptr()]
    assert block["frames"]  # stacks of live blocks are still kept
    torch.sunrise.memory._record_memory_history(enabled=None)
    u = torch.empty(123_459, device=D)
    (block,) = [b for s in torch.sunrise.memory_snapshot() for b in s["blocks"] if b["address"] == u.data_ptr()]
    assert block["frames"] == []
    with pytest.raises(ValueError):
        torch.sunrise.memory._record_memory_history(enabled="sometimes")
    del keep, t, u


def test_memory_history_ring_keeps_its_order_when_resized(memory_history) -> None:
    torch.sunrise.memory._record_memory_history(max_entries=4, clear_history=True)
    keep = [torch.empty(1000 + 10 * i, device=D) for i in range(6)]
    torch.sunrise.memory._record_memory_history(max_entries=10)  # a larger ring, history kept
    keep += [torch.empty(2000 + 10 * i, device=D) for i in range(2)]
    trace = torch.sunrise.memory._snapshot()["device_traces"][0]
    assert [e["addr"] for e in trace] == [t.data_ptr() for t in keep[2:]]
    torch.sunrise.memory._record_memory_history(max_entries=3)  # smaller: the newest three
    assert [e["addr"] for e in torch.sunrise.memory._snapshot()["device_traces"][0]] == [
        t.data_ptr() for t in keep[5:]]
    del keep


def test_a_segment_keeps_its_stack_when_its_blocks_merge(memory_history) -> None:
    torch.sunrise.memory._record_memory_history(clear_history=True)
    torch.sunrise.empty_cache()
    a = torch.empty(300_000, dtype=torch.uint8, device=D)  # a fresh small-pool segment
    b = torch.empty(300_000, dtype=torch.uint8, device=D)  # split from it
    address = a.data_ptr()
    del a, b  # b merges into a's block, which leads the segment
    (seg,) = [s for s in torch.sunrise.memory_snapshot() if s["address"] == address]
    assert seg["frames"] and any(Path(__file__).name in f["filename"] for f in seg["frames"])


def test_memory_history_arguments_as_on_cuda(memory_history) -> None:
    # the legacy form: live blocks' stacks, and a history of trace_alloc_max_entries
    torch.sunrise.memory._record_memory_history(True, trace_alloc_max_entries=3, clear_history=True)
    keep = [torch.empty(1000 + 10 * i, device=D) for i in range(5)]
    assert len(torch.sunrise.memory._snapshot()["device_traces"][0]) == 3
    (block,) = [b for s in torch.sunrise.memory_snapshot() for b in s["blocks"] if b["address"] == keep[0].data_ptr()]
    assert block["frames"]
    torch.sunrise.memory._record_memory_history(False)
    assert torch.sunrise.memory._snapshot()["device_traces"][0] == []
    # context=None: a history without stacks
    torch.sunrise.memory._record_memory_history("all", context=None)
    t = torch.empty(3000, device=D)
    (entry,) = [e for e in torch.sunrise.memory._snapshot()["device_traces"][0] if e["addr"] == t.data_ptr()]
    assert entry["action"] == "alloc" and entry["frames"] == []
    del keep, t


def test_out_of_memory_is_in_the_history(memory_history) -> None:
    total = torch.sunrise.get_device_properties(0).total_memory
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(total * 2, dtype=torch.uint8, device=D)
    trace = torch.sunrise.memory._snapshot()["device_traces"][0]
    (oom,) = [e for e in trace if e["action"] == "oom"]
    assert oom["size"] == total * 2 and oom["device_free"] > 0
