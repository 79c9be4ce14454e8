"""Graph capture and replay, as CUDA graphs: ``torch.accelerator.Graph`` and ``torch.sunrise``'s
``SunriseGraph``, ``graph``, ``make_graphed_callables`` and ``graph_pool_handle``.

A capture records the work the code enqueues and runs none of it; every replay runs all of it on
the same memory, so new inputs are copied into the tensors the capture read and results are read
from the tensors it produced. Results are compared with the same computation on the CPU (bitwise).
Also covered: random ops drawing fresh numbers per replay (eager's numbers after the same seed),
the graphs' private memory pools, the calls a capture refuses (and recovering from them), captures
forking onto other streams, ``sunrise:1``, ``SUNRISE_MEMCHECK=1``, and a GPT-2 decode step replayed
per token.
"""

from __future__ import annotations

import copy
import gc
import warnings
from typing import Callable, Iterator

import pytest
import torch

import torch_sunrise
from conftest import assert_same_as_cpu, describe, pending_while

D = "sunrise"
SunriseGraph = torch.sunrise.SunriseGraph


def _pool_users(pool: tuple[int, int], device: int = 0) -> int:
    """How many live graphs use the memory pool ``pool`` of ``device``."""
    return torch_sunrise._C._graph_pool_use_count(device, pool)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))


# ------------------------------------------------------------ capture and replay


@pytest.mark.no_fallback
def test_capture_records_work_and_replay_runs_it() -> None:
    x_cpu = torch.arange(6.0)
    x = x_cpu.to(D)
    g = SunriseGraph()
    assert not torch.sunrise.is_current_stream_capturing()
    with torch.sunrise.graph(g):
        assert torch.sunrise.is_current_stream_capturing()
        x.add_(1)
        y = x * 2
    assert not torch.sunrise.is_current_stream_capturing()
    assert g.node_count() > 0
    # Recorded, not run: x is still what it was.
    assert_same_as_cpu(x, x_cpu)
    # Each replay runs the in-place add again, on the same memory.
    for _ in range(3):
        g.replay()
        x_cpu.add_(1)
        assert_same_as_cpu(y, x_cpu * 2)


@pytest.mark.no_fallback
def test_replays_read_inputs_copied_into_the_static_input() -> None:
    model = _mlp()
    model_s = copy.deepcopy(model).to(D)
    static_x = torch.zeros(4, 16, device=D)
    with torch.no_grad():
        model_s(static_x)  # warm-up, as for CUDA graphs
        g = SunriseGraph()
        with torch.sunrise.graph(g):
            static_y = model_s(static_x).softmax(-1)
        for _ in range(3):
            x = torch.randn(4, 16)
            static_x.copy_(x.to(D))
            g.replay()
            assert_same_as_cpu(static_y, model(x).softmax(-1))


def test_replay_is_queued_on_the_current_stream() -> None:
    # A replay is one launch in stream order: the host does not wait for it, and it sees the
    # current stream's earlier writes to its inputs.
    a = torch.randn(256, 256, device=D)
    g = SunriseGraph()
    with torch.sunrise.graph(g):
        b = a @ a
    assert pending_while(g.replay)
    new = torch.randn(256, 256)
    a.copy_(new.to(D))
    g.replay()
    assert_same_as_cpu(b, new @ new)


def test_pinned_non_blocking_copies_are_captured() -> None:
    # Host-to-device and device-to-host copies through pinned memory are recorded: each replay
    # copies what the pinned buffer holds then, and writes the result back to the host.
    src, dst = torch.zeros(5).pin_memory(), torch.zeros(5).pin_memory()
    x = torch.empty(5, device=D)
    g = SunriseGraph()
    with torch.sunrise.graph(g):
        x.copy_(src, non_blocking=True)
        dst.copy_(x.exp(), non_blocking=True)
    for _ in range(3):
        src.copy_(torch.randn(5))
        g.replay()
        torch.sunrise.synchronize()
        assert_same_as_cpu(dst, src.exp(), device="cpu")


# ------------------------------------------------------------ random numbers


def _random_ops(x: torch.Tensor, p: torch.Tensor) -> list[torch.Tensor]:
    return [torch.nn.functional.dropout(x, 0.5), torch.rand(7, device=D), torch.randn(3, 4, device=D),
            torch.bernoulli(p)]


def test_random_ops_draw_fresh_numbers_per_replay_as_eager_does() -> None:
    x, p = torch.ones(1000, device=D), torch.full((64,), 0.3, device=D)
    _random_ops(x, p)  # warm-up
    g = SunriseGraph()
    with torch.sunrise.graph(g):
        outs = _random_ops(x, p)
    torch.manual_seed(123)
    g.replay()
    first = [o.cpu() for o in outs]
    g.replay()
    second = [o.cpu() for o in outs]
    assert all(not torch.equal(a, b) for a, b in zip(first, second)), "a replay repeated the last one's numbers"
    # After the same seed, eager code draws exactly what the replays drew.
    torch.manual_seed(123)
    assert_same_as_cpu(_random_ops(x, p), first)
    assert_same_as_cpu(_random_ops(x, p), second)


def test_a_user_generator_must_be_registered() -> None:
    gen = torch.Generator(device=D)
    g = SunriseGraph()
    # Unregistered, its numbers would repeat on every replay: refused.
    with pytest.raises(RuntimeError, match="register"):
        with torch.sunrise.graph(g):
            torch.rand(5, device=D, generator=gen)
    assert not torch.sunrise.is_current_stream_capturing()
    g.register_generator_state(gen)
    with torch.sunrise.graph(g):
        u = torch.rand(5, device=D, generator=gen)
    gen.manual_seed(9)
    g.replay()
    first = u.cpu()
    g.replay()
    second = u.cpu()
    assert not torch.equal(first, second)
    gen.manual_seed(9)
    assert_same_as_cpu([torch.rand(5, device=D, generator=gen), torch.rand(5, device=D, generator=gen)],
                       [first, second])


# ------------------------------------------------------------ memory pools


def test_graph_memory_is_not_handed_to_eager_allocations_while_the_graph_lives() -> None:
    s = torch.sunrise.Stream()
    x_cpu = torch.randn(256, 256)
    x, out = x_cpu.to(D), torch.empty(256, 256, device=D)
    torch.sunrise.synchronize()
    torch.sunrise.empty_cache()
    baseline = torch.sunrise.memory_reserved()
    g = SunriseGraph()
    with torch.sunrise.graph(g, stream=s):
        y = x * 2  # allocated in the graph's private pool
        out.copy_(y + 1)
    y_ptr, pool = y.data_ptr(), g.pool()
    assert _pool_users(pool) == 1
    del y  # the pool now holds only blocks freed by the user, which every replay still writes
    torch.sunrise.empty_cache()
    assert torch.sunrise.memory_reserved() > baseline, "empty_cache released the memory of a live graph"
    # Blocks are reused per stream: eager allocations on the capture's stream are the ones that
    # would get y's block back if it went to the ordinary pool.
    with torch.sunrise.stream(s):
        eager = [torch.full((256, 256), -7.0, device=D) for _ in range(16)]
        assert y_ptr not in {t.data_ptr() for t in eager}
        g.replay()
        assert_same_as_cpu(out, x_cpu * 2 + 1)
        # ... and the replay did not write into them.
        assert_same_as_cpu(torch.stack(eager), torch.full((16, 256, 256), -7.0))
        del eager
    g.reset()
    assert _pool_users(pool) == 0
    torch.sunrise.empty_cache()
    assert torch.sunrise.memory_reserved() <= baseline, "the reset graph's memory was not given back"


def test_repeated_capture_and_reset_keeps_memory_reserved_bounded() -> None:
    # graph() empties the cache on entry, as torch.cuda.graph does: the segments a reset pool gave
    # to the ordinary pools go back to the runtime before the next capture reserves its own.
    x = torch.randn(600, 600, device=D)  # 1.4 MB results: large-pool segments
    g = SunriseGraph()
    reserved = []
    for _ in range(20):
        with torch.sunrise.graph(g):
            y = (x @ x).relu()
        g.replay()
        del y
        pool = g.pool()
        g.reset()
        assert _pool_users(pool) == 0
        reserved.append(torch.sunrise.memory_reserved())
    assert max(reserved) <= reserved[0], f"memory_reserved grows across cycles: {reserved}"


def test_deleting_the_graph_releases_its_pool() -> None:
    s = torch.Stream(device=D)
    x = torch.randn(600, 600, device=D)
    reserved = []
    for _ in range(20):
        g = torch.accelerator.Graph()
        with s, g:
            y = x.sin()
        g.replay()
        pool = g.pool()
        assert _pool_users(pool) == 1
        del g, y
        gc.collect()
        assert _pool_users(pool) == 0
        reserved.append(torch.sunrise.memory_reserved())
    assert max(reserved) <= reserved[0], f"memory_reserved grows across cycles: {reserved}"


def test_graphs_sharing_a_pool_handle_replay_in_order() -> None:
    x_cpu = torch.randn(64, 64)
    x = x_cpu.to(D)
    pool = torch.sunrise.graph_pool_handle()
    g1, g2 = SunriseGraph(), SunriseGraph()
    with torch.sunrise.graph(g1, pool=pool):
        a = x.tanh() * 3
    with torch.sunrise.graph(g2, pool=pool):
        b = a @ x + 1
    assert _pool_users(pool) == 2
    new = torch.randn(64, 64)
    x.copy_(new.to(D))
    g1.replay()
    g2.replay()
    assert_same_as_cpu([a, b], [new.tanh() * 3, (new.tanh() * 3) @ new + 1])
    g1.reset()
    assert _pool_users(pool) == 1
    g2.reset()
    assert _pool_users(pool) == 0


# ------------------------------------------------------------ what a capture refuses


REFUSED: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {
    "item": lambda x, idx: x.sum().item(),
    "synchronize": lambda x, idx: torch.sunrise.synchronize(),
    "stream_synchronize": lambda x, idx: torch.sunrise.current_stream().synchronize(),
    "nonzero": lambda x, idx: torch.nonzero(x),
    "boolean_mask": lambda x, idx: x[x > 0],
    "copy_to_cpu": lambda x, idx: x.cpu(),
    "copy_from_pageable": lambda x, idx: x.copy_(torch.randn(8)),
    "equal": lambda x, idx: torch.equal(x, x),
    "fallback_op": lambda x, idx: torch.bincount(idx),  # no sunrise kernel, no Meta kernel: synchronous fallback
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_call_raises_and_the_graph_captures_again(case: str) -> None:
    x_cpu = torch.randn(8)
    x, idx = x_cpu.to(D), torch.tensor([1, 2, 2], device=D)
    g = SunriseGraph()
    with pytest.raises(torch.AcceleratorError, match="cannot be captured|capturing"):
        with torch.sunrise.graph(g):
            y = x + 1
            REFUSED[case](x, idx)
    assert not torch.sunrise.is_current_stream_capturing()
    # The context manager reset g: it captures again, and the new graph is complete.
    with torch.sunrise.graph(g):
        y = x * 3
    g.replay()
    assert_same_as_cpu(y, x_cpu * 3)


def test_a_refused_call_invalidates_a_manual_capture() -> None:
    # With capture_begin/capture_end, capture_end reports that the graph is incomplete, and why.
    x = torch.randn(8, device=D)
    g = SunriseGraph()
    with torch.sunrise.stream(torch.sunrise.Stream()):
        g.capture_begin()
        with pytest.raises(torch.AcceleratorError, match="cannot be captured"):
            x.sum().item()
        with pytest.raises(torch.AcceleratorError, match=r"invalidated.*Tensor\.item\(\)"):
            g.capture_end()
        assert not torch.sunrise.is_current_stream_capturing()
    with pytest.raises(RuntimeError, match="before a capture ended"):
        g.replay()


def test_body_error_propagates_and_the_capture_is_discarded() -> None:
    x = torch.randn(8, device=D)
    g = SunriseGraph()
    with pytest.raises(ValueError, match="from the body"):
        with torch.sunrise.graph(g):
            x.add_(1)
            raise ValueError("from the body")
    assert not torch.sunrise.is_current_stream_capturing()
    with pytest.raises(RuntimeError, match="before a capture ended"):
        g.replay()
    with torch.sunrise.graph(g):
        y = x - 1
    g.replay()
    assert_same_as_cpu(y, x.cpu() - 1)


@pytest.mark.parametrize("mode", ["relaxed", "thread_local", "global"])
def test_capture_error_mode_decides_whether_synchronize_is_allowed(mode: str) -> None:
    x_cpu = torch.randn(8)
    x = x_cpu.to(D)
    g = SunriseGraph()
    if mode != "relaxed":
        with pytest.raises(torch.AcceleratorError, match="capturing"):
            with torch.sunrise.graph(g, capture_error_mode=mode):
                torch.sunrise.synchronize()
        return
    with torch.sunrise.graph(g, capture_error_mode=mode):
        y = x * 3
        torch.sunrise.synchronize()  # allowed, and does not end or break the capture
        z = y + 1
    g.replay()
    assert_same_as_cpu(z, x_cpu * 3 + 1)


def test_fallback_op_with_known_output_shapes_is_captured_after_warm_up() -> None:
    # histc has no sunrise kernel but a Meta kernel: after a first call with these shapes (checked
    # on the host, so refused during capture), its CPU kernel is queued as device work, and captured.
    x = torch.randn(64, device=D)
    g = SunriseGraph()
    with pytest.raises(torch.AcceleratorError, match="warm-up"):
        with torch.sunrise.graph(g):
            torch.histc(x, bins=5)
    torch.histc(x, bins=5)
    with torch.sunrise.graph(g):
        h = torch.histc(x, bins=5)
    for _ in range(2):
        new = torch.randn(64)
        x.copy_(new.to(D))
        g.replay()
        assert_same_as_cpu(h, torch.histc(new, bins=5))


# ------------------------------------------------------------ several streams, devices


@pytest.mark.no_fallback
def test_capture_forks_onto_another_stream_and_joins_back() -> None:
    x_cpu = torch.randn(16, 16)
    x = x_cpu.to(D)
    s2 = torch.sunrise.Stream()
    g = SunriseGraph()
    with torch.sunrise.graph(g):
        a = x @ x
        s2.wait_stream(torch.sunrise.current_stream())
        with torch.sunrise.stream(s2):
            b = a.sin() * 2
        c = a.cos()
        torch.sunrise.current_stream().wait_stream(s2)
        out = b + c
    for _ in range(2):
        new = torch.randn(16, 16)
        x.copy_(new.to(D))
        g.replay()
        a_cpu = new @ new
        assert_same_as_cpu(out, a_cpu.sin() * 2 + a_cpu.cos())


def test_a_fork_not_joined_back_fails_capture_end() -> None:
    x = torch.randn(8, device=D)
    s2 = torch.sunrise.Stream()
    g = SunriseGraph()
    with pytest.raises(torch.AcceleratorError, match="not joined"):
        with torch.sunrise.graph(g):
            a = x + 1
            s2.wait_stream(torch.sunrise.current_stream())
            with torch.sunrise.stream(s2):
                a.mul_(2)
    assert not torch.sunrise.is_current_stream_capturing()
    with torch.sunrise.stream(s2):
        assert not torch.sunrise.is_current_stream_capturing()
        assert_same_as_cpu(x + 5, x.cpu() + 5)  # the forked stream runs work again
    with torch.sunrise.graph(g):
        y = x + 1
    g.replay()
    assert_same_as_cpu(y, x.cpu() + 1)


@pytest.mark.two_devices
def test_graph_on_device_1_captures_on_a_stream_of_device_1() -> None:
    x_cpu = torch.randn(8, 8)
    x = x_cpu.to("sunrise:1")
    g = SunriseGraph()
    with torch.sunrise.graph(g, stream=torch.sunrise.Stream(device=1)):
        assert torch.sunrise.current_device() == 1
        y = (x @ x).relu()
    assert torch.sunrise.current_device() == 0
    assert _pool_users(g.pool(), device=1) == 1 and _pool_users(g.pool(), device=0) == 0
    # Replayed while sunrise:0 is current: the graph runs on its own device.
    new = torch.randn(8, 8)
    x.copy_(new.to("sunrise:1"))
    g.replay()
    assert_same_as_cpu(y, (new @ new).relu(), device="sunrise:1")
    # torch.accelerator.Graph, with a stream of device 1 (which also makes sunrise:1 current).
    ag = torch.accelerator.Graph()
    with torch.Stream(device="sunrise:1"), ag:
        z = x * 3 - y
    assert torch.sunrise.current_device() == 0
    ag.replay()
    assert_same_as_cpu(z, new * 3 - (new @ new).relu(), device="sunrise:1")
    pool = ag.pool()
    ag.reset()
    assert _pool_users(pool, device=1) == 0


@pytest.mark.two_devices
def test_graph_context_under_device_1_captures_device_1() -> None:
    # graph() keeps a default capture stream per device: one made while sunrise:0 was current
    # must not pull a capture under torch.sunrise.device(1) back to sunrise:0.
    torch.sunrise.graph(SunriseGraph())
    x = torch.zeros(8, 8, device="sunrise:1")
    with torch.sunrise.device(1):
        g = SunriseGraph()
        with torch.sunrise.graph(g):
            assert torch.sunrise.current_device() == 1, "graph() under device(1) captures another device"
            y = (x @ x).relu()
    new = torch.randn(8, 8)
    x.copy_(new.to("sunrise:1"))
    g.replay()
    assert_same_as_cpu(y, (new @ new).relu(), device="sunrise:1")


def test_memcheck_capture_and_replay_equal_cpu(run_python) -> None:
    # Under SUNRISE_MEMCHECK=1 device work faults on freed or out-of-bounds memory: a replay
    # touching memory its pool gave back would abort. The graph's outputs are still read after
    # its reset, and capture/reset cycles give their checked memory back.
    proc = run_python(
        """
        import copy, torch, torch_sunrise
        D = "sunrise"
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
        model_s = copy.deepcopy(model).to(D)
        static_x = torch.zeros(4, 16, device=D)
        with torch.no_grad():
            model_s(static_x)
            g = torch.sunrise.SunriseGraph()
            with torch.sunrise.graph(g):
                static_y = model_s(static_x).softmax(-1)
            for _ in range(3):
                x = torch.randn(4, 16)
                static_x.copy_(x.to(D))
                g.replay()
                torch.testing.assert_close(static_y.cpu(), model(x).softmax(-1), rtol=0, atol=0)
            pool = g.pool()
            g.reset()
            assert torch_sunrise._C._graph_pool_use_count(0, pool) == 0
            torch.testing.assert_close(static_y.cpu(), model(x).softmax(-1), rtol=0, atol=0)
            del static_y
            reserved = []
            for _ in range(10):
                with torch.sunrise.graph(g):
                    out = model_s(static_x)
                g.replay()
                torch.testing.assert_close(out.cpu(), model(x), rtol=0, atol=0)
                del out
                g.reset()
                reserved.append(torch.sunrise.memory_reserved())
            assert max(reserved) <= reserved[0], reserved
        torch.sunrise.synchronize()
        print("graph-memcheck-ok")
        """,
        env={"SUNRISE_MEMCHECK": "1"},
    )
    assert proc.returncode == 0 and "graph-memcheck-ok" in proc.stdout, describe(proc)


# ------------------------------------------------------------ make_graphed_callables


@pytest.fixture
def _no_accumulate_grad_stream_warning():
    # make_graphed_callables captures the parameters' AccumulateGrad nodes on its capture stream,
    # and PyTorch warns when the backward later runs on another stream (as with CUDA).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
        yield


@pytest.mark.no_fallback
@pytest.mark.usefixtures("_no_accumulate_grad_stream_warning")
def test_make_graphed_callables_module_forward_and_backward_equal_cpu() -> None:
    model = _mlp()
    model_s = copy.deepcopy(model).to(D)
    graphed = torch.sunrise.make_graphed_callables(model_s, (torch.randn(5, 16, device=D, requires_grad=True),))
    assert graphed is model_s
    for _ in range(3):
        # set_to_none, as CUDA's documentation asks: the graph's gradients live in static tensors.
        model.zero_grad(set_to_none=True)
        model_s.zero_grad(set_to_none=True)
        x, grad = torch.randn(5, 16), torch.randn(5, 8)
        x_c, x_s = x.clone().requires_grad_(), x.to(D).requires_grad_()
        out_c, out_s = model(x_c), graphed(x_s)
        assert_same_as_cpu(out_s.detach(), out_c.detach())
        out_c.backward(grad)
        out_s.backward(grad.to(D))
        assert_same_as_cpu(x_s.grad, x_c.grad)
        assert_same_as_cpu([p.grad for p in model_s.parameters()], [p.grad for p in model.parameters()])


@pytest.mark.no_fallback
def test_make_graphed_callables_function() -> None:
    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sin() + b.exp()

    graphed = torch.sunrise.make_graphed_callables(
        f, (torch.randn(6, device=D, requires_grad=True), torch.randn(6, device=D, requires_grad=True)))
    for _ in range(2):
        a, b = torch.randn(6), torch.randn(6)
        cpu = [a.clone().requires_grad_(), b.clone().requires_grad_()]
        dev = [a.to(D).requires_grad_(), b.to(D).requires_grad_()]
        out_c, out_s = f(*cpu), graphed(*dev)
        assert_same_as_cpu(out_s.detach(), out_c.detach())
        out_c.square().sum().backward()
        out_s.square().sum().backward()
        assert_same_as_cpu([t.grad for t in dev], [t.grad for t in cpu])


@pytest.mark.no_fallback
@pytest.mark.usefixtures("_no_accumulate_grad_stream_warning")
def test_make_graphed_callables_two_modules_share_one_pool() -> None:
    torch.manual_seed(0)
    first, second = torch.nn.Linear(8, 8), torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(8, 3))
    first_s, second_s = copy.deepcopy(first).to(D), copy.deepcopy(second).to(D)
    pool = torch.sunrise.graph_pool_handle()
    samples = ((torch.randn(4, 8, device=D, requires_grad=True),), (torch.randn(4, 8, device=D, requires_grad=True),))
    g_first, g_second = torch.sunrise.make_graphed_callables((first_s, second_s), samples, pool=pool)
    assert _pool_users(pool) == 4  # a forward and a backward graph per module
    params_c = [*first.parameters(), *second.parameters()]
    params_s = [*first_s.parameters(), *second_s.parameters()]
    for _ in range(2):
        for p in params_c + params_s:
            p.grad = None
        x = torch.randn(4, 8)
        x_c, x_s = x.clone().requires_grad_(), x.to(D).requires_grad_()
        out_c, out_s = second(first(x_c)), g_second(g_first(x_s))
        assert_same_as_cpu(out_s.detach(), out_c.detach())
        out_c.square().sum().backward()
        out_s.square().sum().backward()
        assert_same_as_cpu(x_s.grad, x_c.grad)
        assert_same_as_cpu([p.grad for p in params_s], [p.grad for p in params_c])


# ------------------------------------------------------------ a GPT-2 decode step


def test_gpt2_decode_step_replayed_per_token_gives_cpu_greedy_tokens() -> None:
    transformers = pytest.importorskip("transformers")
    # initializer_range 0.5: a random model whose greedy tokens vary (the default gives one token
    # over and over, which a replay that does not advance would also give).
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=64,
                                  initializer_range=0.5, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model_s = copy.deepcopy(model).to(D)
    prompt = torch.randint(0, cfg.vocab_size, (1, 6))
    new_tokens, max_len = 12, 24

    def decode(m: torch.nn.Module, device: str, graphed: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefill, one eager decode step (the warm-up), then new_tokens - 2 steps, replayed or eager."""
        cache = transformers.StaticCache(config=cfg, max_cache_len=max_len)
        mask = torch.ones(1, max_len, dtype=torch.long, device=device)
        ids = prompt.to(device)
        logits = m(ids, attention_mask=mask[:, : ids.shape[1]], past_key_values=cache, use_cache=True).logits
        static_ids = logits[:, -1].argmax(-1, keepdim=True)
        tokens = [static_ids.clone()]

        def step() -> torch.Tensor:
            logits = m(static_ids, attention_mask=mask, past_key_values=cache, use_cache=True).logits
            static_ids.copy_(logits[:, -1].argmax(-1, keepdim=True))
            return logits

        step()
        tokens.append(static_ids.clone())
        if graphed:
            g = SunriseGraph()
            with torch.sunrise.graph(g):
                static_logits = step()  # not run: the cache's length is advanced by each replay
        for _ in range(new_tokens - 2):
            if graphed:
                g.replay()
            else:
                static_logits = step()
            tokens.append(static_ids.clone())
        return torch.cat([ids, *tokens], 1), static_logits

    with torch.no_grad():
        greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                do_sample=False)
        tokens_c, logits_c = decode(model, "cpu", graphed=False)
        tokens_s, logits_s = decode(model_s, D, graphed=True)
        tokens_e, logits_e = decode(model_s, D, graphed=False)
    assert torch.equal(tokens_c, greedy)  # the CPU loop is generate's greedy decoding
    assert_same_as_cpu(tokens_s, greedy)
    # Replays compute what the same steps compute eagerly on sunrise, bit for bit.
    assert_same_as_cpu(tokens_e, greedy)
    assert torch.equal(logits_s.cpu(), logits_e.cpu())
    # Against the CPU within tolerance: for a single query, the bits of CPU's flash attention kernel
    # depend on the number of threads it runs with, which differs on the device (eager sunrise
    # differs from eager CPU the same way; not a graph matter).
    assert_same_as_cpu(logits_s, logits_c, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ debugging, torch.accelerator.Graph


def test_debug_dump_writes_graphviz(tmp_path) -> None:
    x = torch.randn(8, device=D)
    g = SunriseGraph()
    g.enable_debug_mode()  # keeps the captured graph after instantiation
    with torch.sunrise.graph(g):
        y = x.sin() * 2
    assert g.node_count() > 0
    path = tmp_path / "graph.dot"
    g.debug_dump(str(path))
    assert "digraph" in path.read_text()
    g.replay()
    assert_same_as_cpu(y, x.cpu().sin() * 2)
    # Without debug mode only the executable graph is kept: nothing to dump.
    plain = SunriseGraph()
    with torch.sunrise.graph(plain):
        x + 1
    with pytest.raises(RuntimeError, match="enable_debug_mode"):
        plain.debug_dump(str(tmp_path / "plain.dot"))


@pytest.mark.no_fallback
def test_accelerator_graph_keep_graph_and_shared_pool(tmp_path) -> None:
    # torch.accelerator.Graph's __enter__ does not switch streams: the stream context does.
    x_cpu = torch.arange(6.0)
    x = x_cpu.to(D)
    s = torch.Stream(device=D)
    g1 = torch.accelerator.Graph(keep_graph=True)
    with s, g1:
        x.add_(1)
        y = x * 2
    assert_same_as_cpu(x, x_cpu)  # recorded, not run
    g1.debug_dump(str(tmp_path / "kept.dot"))  # kept: dumpable without debug mode
    assert "digraph" in (tmp_path / "kept.dot").read_text()
    g2 = torch.accelerator.Graph(pool=g1.pool())
    with s, g2:
        z = y + 100
    assert g2.pool() == g1.pool() and _pool_users(g1.pool()) == 2
    g1.replay()  # instantiates the kept graph
    g2.replay()
    x_cpu += 1
    assert_same_as_cpu([x, y, z], [x_cpu, x_cpu * 2, x_cpu * 2 + 100])
    g1.instantiate()  # again, explicitly: replays as before
    g1.replay()
    g2.replay()
    x_cpu += 1
    assert_same_as_cpu([x, y, z], [x_cpu, x_cpu * 2, x_cpu * 2 + 100])
    # Not kept: instantiated by capture_end, nothing left to instantiate.
    with pytest.raises(RuntimeError, match="not kept"):
        g2.instantiate()
    pool = g1.pool()
    g1.reset()
    g2.reset()
    assert _pool_users(pool) == 0


def test_accelerator_graph_relaxed_mode_allows_synchronize() -> None:
    x_cpu = torch.randn(8)
    x = x_cpu.to(D)
    s = torch.Stream(device=D)
    g = torch.accelerator.Graph(capture_error_mode="relaxed")
    with s, g:
        y = x.exp()
        torch.sunrise.synchronize()
    g.replay()
    assert_same_as_cpu(y, x_cpu.exp())


# ------------------------------------------------------------ torch.compile(backend="sunrise_graphs")


@pytest.fixture
def replays(monkeypatch) -> Iterator[list[int]]:
    """Counts SunriseGraph replays (the backend's graphs included) during the test; afterwards
    drops Dynamo's compiled code, whose graphs hold their private memory pools."""
    count = [0]
    original = SunriseGraph.replay

    def counting(self: SunriseGraph) -> None:
        count[0] += 1
        original(self)

    monkeypatch.setattr(SunriseGraph, "replay", counting)
    yield count
    torch._dynamo.reset()
    gc.collect()
    torch.sunrise.empty_cache()


@pytest.mark.no_fallback
def test_compiled_inference_replays_graphs_with_compiled_cpus_results(replays) -> None:
    torch._dynamo.reset()
    model = _mlp().eval()
    model_s = copy.deepcopy(model).to(D)
    compiled_cpu = torch.compile(model)
    compiled = torch.compile(model_s, backend="sunrise_graphs")  # the entry point's name
    torch.manual_seed(1)
    with torch.no_grad():
        for _ in range(4):  # a warm-up call, the capture, then replays with new inputs
            x = torch.randn(4, 16)
            assert_same_as_cpu(compiled(x.to(D)), compiled_cpu(x))
    assert replays[0] >= 2


def test_compiled_training_replays_forward_and_backward(replays) -> None:
    torch._dynamo.reset()
    model = _mlp()
    model_s = copy.deepcopy(model).to(D)
    compiled = torch.compile(model_s, backend="sunrise_graphs")
    opt, opt_s = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, model_s))
    torch.manual_seed(2)
    for _ in range(4):
        x = torch.randn(8, 16)
        for m, o, inp in ((model, opt, x), (compiled, opt_s, x.to(D))):
            o.zero_grad(set_to_none=True)
            m(inp).square().mean().backward()
            o.step()
    # Inductor's kernels on both sides differ from eager CPU's in the last bits.
    for p, p_s in zip(model.parameters(), model_s.parameters()):
        assert_same_as_cpu(p_s.detach(), p.detach(), rtol=1e-5, atol=1e-6)
    assert replays[0] >= 4  # forward and backward graphs


@pytest.mark.no_fallback
def test_compiled_graph_writes_back_an_input_it_mutates(replays) -> None:
    torch._dynamo.reset()

    def accumulate(total: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total.add_(x)
        return total * 2

    compiled = torch.compile(accumulate, backend="sunrise_graphs")
    total, total_s = torch.zeros(5), torch.zeros(5, device=D)
    for i in range(4):
        x = torch.full((5,), float(i + 1))
        assert_same_as_cpu(compiled(total_s, x.to(D)), accumulate(total, x))
        assert_same_as_cpu(total_s, total)
    assert replays[0] >= 2


def test_generate_with_a_static_cache_replays_the_decoding_step(replays) -> None:
    transformers = pytest.importorskip("transformers")
    torch._dynamo.reset()
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=64,
                                  initializer_range=0.5, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model_s = copy.deepcopy(model).to(D)
    prompt = torch.randint(0, cfg.vocab_size, (1, 6))
    kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=10, do_sample=False,
                  cache_implementation="static")
    with torch.no_grad():
        expected = model.generate(prompt, disable_compile=True, **kwargs)
        # transformers compiles the decoding step (mode="reduce-overhead"): on sunrise, graph replays.
        got = model_s.generate(prompt.to(D), **{k: v.to(D) if isinstance(v, torch.Tensor) else v
                                                 for k, v in kwargs.items()})
    assert_same_as_cpu(got, expected)
    assert replays[0] >= 5


@pytest.mark.no_fallback
def test_compiled_code_that_cannot_be_captured_runs_without_graphs(replays) -> None:
    torch._dynamo.reset()

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1

    def reads_the_host(x: torch.Tensor) -> torch.Tensor:
        return x * x.sum().item()  # a graph break: the .item() stays in eager code

    compiled = torch.compile(scaled, backend="sunrise_graphs")
    for i in range(3):
        x = torch.full((4,), float(i))
        assert_same_as_cpu(compiled(x.to(D)), scaled(x))
    # A graphed function called inside the caller's own capture is captured along with it.
    static_x = torch.ones(4, device=D)
    g = SunriseGraph()
    with torch.sunrise.graph(g):
        y = compiled(static_x)
    static_x.fill_(5.0)
    g.replay()
    assert_same_as_cpu(y, scaled(torch.full((4,), 5.0)))
    assert_same_as_cpu(torch.compile(reads_the_host, backend="sunrise_graphs")(torch.ones(3, device=D)),
                       reads_the_host(torch.ones(3)))


# ------------------------------------------------------------ misuse the graph survives


def test_reset_in_the_middle_of_a_capture_ends_it() -> None:
    s = torch.sunrise.Stream()
    x = torch.zeros(4, device=D)
    s.wait_stream(torch.sunrise.current_stream())  # x is written on the default stream
    g = SunriseGraph()
    with torch.sunrise.stream(s):
        g.capture_begin()
        x.add_(1)
        g.reset()  # as when the graph is garbage-collected mid-capture
        assert not torch.sunrise.is_current_stream_capturing()
        y = torch.ones(4, device=D) + x  # allocates and runs on the stream again
    torch.sunrise.current_stream().wait_stream(s)  # y is read on the default stream
    assert_same_as_cpu(y, torch.ones(4))
    del g
    gc.collect()
    with torch.sunrise.stream(s):
        g2 = SunriseGraph()
        g2.capture_begin()
    del g2  # destroyed while capturing: ends the capture too
    gc.collect()
    with torch.sunrise.stream(s):
        assert not torch.sunrise.is_current_stream_capturing()
        assert_same_as_cpu(x + 1, torch.ones(4))


def test_capture_end_on_another_thread_is_refused_and_the_capture_goes_on() -> None:
    import threading

    s = torch.sunrise.Stream()
    x = torch.zeros(4, device=D)
    g = SunriseGraph()
    errors: list[BaseException] = []

    def end_elsewhere() -> None:
        try:
            with torch.sunrise.stream(s):
                g.capture_end()
        except RuntimeError as e:
            errors.append(e)

    with torch.sunrise.stream(s):
        g.capture_begin()
        x.add_(1)
        worker = threading.Thread(target=end_elsewhere)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive()
        assert len(errors) == 1 and "thread" in str(errors[0])
        assert torch.sunrise.is_current_stream_capturing()
        x.add_(1)
        g.capture_end()
    g.replay()
    assert_same_as_cpu(x, torch.full((4,), 2.0))


def test_make_graphed_callables_with_outputs_that_need_no_grad() -> None:
    x = torch.randn(4, 3, device=D, requires_grad=True)
    graphed = torch.sunrise.make_graphed_callables(lambda t: (t * 2).detach(), (x,))
    assert_same_as_cpu(graphed(x.detach().cpu().to(D).requires_grad_()), (x.detach().cpu() * 2))


def test_pinned_memory_allocated_during_capture_stays_the_graphs() -> None:
    x = torch.zeros(1024, device=D)
    g = SunriseGraph()
    # Pinning memory waits for the device: allowed in relaxed mode only, as on CUDA.
    with torch.sunrise.graph(g, capture_error_mode="relaxed"):
        src = torch.full((1024,), 7.0).pin_memory()  # filled now, by the host
        x.copy_(src, non_blocking=True)
        y = x * 2
    address = src.data_ptr()
    del src
    other = torch.full((1024,), 100.0).pin_memory()
    assert other.data_ptr() != address  # the graph's replays still read that buffer
    g.replay()
    assert_same_as_cpu(y, torch.full((1024,), 14.0))
