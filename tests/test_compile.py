"""torch.compile on sunrise (issue #13): Dynamo's device interface and Inductor's backend.

Inductor generates the CPU's C++ kernels for sunrise graphs and the wrapper queues each on the
current sunrise stream. A compiled sunrise function is compared with the same compiled function on
the CPU (the same kernels: bitwise) and with eager CPU (fusion may round differently: tolerance).
The Inductor cache is shared by the test run (``TORCHINDUCTOR_CACHE_DIR``, tests/conftest.py).
Slow model suites: tests/test_compile_models.py.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._inductor.utils import run_and_get_code
from torch.testing import assert_close

import torch_sunrise
from conftest import assert_same_as_cpu, describe, pending_while


def _to(args: tuple, device: str) -> list:
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]


def compiled_on_both(fn: Callable[..., Any], *cpu_args: Any, **compile_kwargs: Any) -> tuple[Any, Any]:
    """``(compiled fn on sunrise copies, the same compiled fn on CPU clones)``, after checking that
    the sunrise graph's kernels were generated for sunrise and queued (not CPU kernels) and that
    both agree with eager CPU within tolerance."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, **compile_kwargs)
    got, codes = run_and_get_code(compiled, *_to(cpu_args, "sunrise"))
    if codes and "cpp_fused" in "".join(codes):
        assert "sunrise_cpp_kernel(" in "".join(codes), "the sunrise graph's kernels are not sunrise kernels"
    expected = compiled(*[a.clone() if isinstance(a, torch.Tensor) else a for a in cpu_args])
    eager = fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in cpu_args])
    assert_close(_cpu(got), eager, equal_nan=True)
    return got, expected


def _cpu(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.cpu()
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu(v) for v in x)
    return x


@pytest.mark.no_fallback
@pytest.mark.parametrize(
    "name, fn, shape",
    [
        ("pointwise", lambda x: torch.sin(x) + x * 2, (8,)),
        ("pointwise_chain", lambda x: torch.tanh(x.exp() - 1).sigmoid() * x.abs().sqrt(), (33, 17)),
        ("reduction", lambda x: (x.sum(0), x.amax(1), x.mean()), (64, 33)),
        ("softmax", lambda x: torch.softmax(x * 3, dim=-1), (16, 100)),
        ("log_softmax_noncontiguous", lambda x: torch.log_softmax(x.t(), dim=0), (40, 24)),
        ("where_cumsum", lambda x: torch.where(x > 0, x, 0.1 * x).cumsum(1), (6, 50)),
        ("integer", lambda x: (x * 3 + 7) // 5 % 11, (100,)),
    ],
)
def test_compiled_matches_cpu(name: str, fn: Callable, shape: tuple) -> None:
    x = torch.randn(shape) if name != "integer" else torch.randint(-1000, 1000, shape)
    assert_same_as_cpu(*compiled_on_both(fn, x))


@pytest.mark.no_fallback
@pytest.mark.parametrize(
    "name, fn",
    [
        ("variance", lambda x: x.var(1)),
        ("layer_norm", lambda x: torch.nn.functional.layer_norm(x, (33,)) * 2),
        ("divide_by_constant", lambda x: x / 3.0),
    ],
)
def test_lowering_for_devices_other_than_cpu(name: str, fn: Callable) -> None:
    # Inductor lowers some ops for the CPU alone in its own way (variance, layer norm's too, in
    # two passes rather than Welford's; a division by a constant not as a multiplication by the
    # reciprocal) and
    # lowers them on sunrise as on every other device: close to the CPU's, not its bits.
    got, expected = compiled_on_both(fn, torch.randn(64, 33))
    assert_same_as_cpu(got, expected, rtol=None, atol=None)


@pytest.mark.no_fallback
def test_matmul_with_fused_epilogue() -> None:
    def fn(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(a @ b + bias) * 0.5

    assert_same_as_cpu(*compiled_on_both(fn, torch.randn(32, 48), torch.randn(48, 40), torch.randn(40)))


def test_kernels_are_generated_for_sunrise() -> None:
    before = torch._inductor.metrics.generated_kernel_count
    with torch._inductor.config.patch(fx_graph_cache=False), torch._functorch.config.patch(enable_autograd_cache=False):
        got, expected = compiled_on_both(lambda x: (x.cos() + 1).sum(-1), torch.randn(7, 9))
    assert torch._inductor.metrics.generated_kernel_count > before
    assert_same_as_cpu(got, expected)


def test_compiled_kernel_is_queued() -> None:
    f = torch.compile(lambda x: (x.sin() * 2 + 1).cos())
    x = torch.randn(1 << 16, device="sunrise")
    f(x)
    torch.sunrise.synchronize()
    # The host returns while the kernel waits behind a busy stream.
    assert pending_while(lambda: f(x))


def test_compiled_kernels_follow_the_current_stream() -> None:
    f = torch.compile(lambda x: x * 2 + 1)
    x = torch.randn(4096, device="sunrise")
    f(x)
    side = torch.sunrise.Stream()
    side.wait_stream(torch.sunrise.current_stream())
    torch.sunrise.current_stream().synchronize()  # idle from here on, unless work is queued on it
    with torch.sunrise.stream(side):
        w = torch.randn(768, 768, device="sunrise")
        for _ in range(6):
            w = w @ w / 768
        y = f(x)
        assert not side.query()
    assert torch.sunrise.current_stream().query()  # nothing was queued on the default stream
    side.synchronize()
    assert_same_as_cpu(y, x.cpu() * 2 + 1)


def test_cpu_operands_are_read_at_launch() -> None:
    # A 0-dim CPU operand (an optimizer's step count) changed by the host after the call, while the
    # compiled kernel still waits behind queued work: the kernel uses the value of the call.
    f = torch.compile(lambda x, step: x * step + 1)
    x, step = torch.ones(1 << 12, device="sunrise"), torch.tensor(2.0)
    f(x, step)
    torch.sunrise.synchronize()
    w = torch.randn(768, 768, device="sunrise")
    for _ in range(6):
        w = w @ w / 768
    y = f(x, step)
    step += 5  # on the host, before the kernel ran
    assert_same_as_cpu(y, torch.full((1 << 12,), 3.0))


def test_compiled_kernel_waits_for_the_work_it_reads() -> None:
    # A large matmul, then a fused epilogue on its output, many times over: a kernel that ran
    # before its input was ready, or on memory the allocator handed to a later op, gives other bits.
    f = torch.compile(lambda a, b: torch.relu(a @ b) * 2 - 1)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    expected = f(a, b)
    a_s, b_s = a.to("sunrise"), b.to("sunrise")
    results = [f(a_s + i, b_s) for i in range(20)]
    for i, r in enumerate(results):
        assert_same_as_cpu(r, f(a + i, b))
    assert_same_as_cpu(results[0], expected)


@pytest.mark.two_devices
def test_compile_on_second_device() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x @ x.t(), -1) + torch.ones(x.shape[0], device=x.device)

    got, expected = compiled_on_both(fn, torch.randn(12, 20))
    x1 = torch.randn(12, 20)
    y1 = torch.compile(fn)(x1.to("sunrise:1"))
    assert_same_as_cpu(y1, torch.compile(fn)(x1), device="sunrise:1")
    assert_same_as_cpu(got, expected)


def test_backward() -> None:
    def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x @ w).pow(2).mean()

    x, w = torch.randn(16, 32), torch.randn(32, 8)
    compiled = torch.compile(fn)
    grads = []
    for device in ("sunrise", "cpu"):
        xd, wd = x.to(device).requires_grad_(), w.to(device).requires_grad_()
        compiled(xd, wd).backward()
        grads.append((xd.grad, wd.grad))
    assert_same_as_cpu(grads[0], grads[1])


def test_pointwise_fused_into_reductions() -> None:
    # Inductor's scheduler reindexes pointwise nodes to fuse them into reductions, which only works
    # for Triton's node groups; torch_sunrise's one patch of Inductor keeps sunrise nodes out of it
    # as CPU nodes are (without it this graph fails to compile).
    from torch._inductor.scheduler import BaseSchedulerNode

    def fn(x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(torch.nn.functional.gelu(x @ w), t)

    x, w, t = torch.randn(8, 16), torch.randn(16, 40), torch.randint(0, 40, (8,))
    grads = []
    with torch._inductor.config.patch(fx_graph_cache=False), torch._functorch.config.patch(enable_autograd_cache=False):
        compiled = torch.compile(fn)
        for device in ("sunrise", "cpu"):
            xd, wd = x.to(device).requires_grad_(), w.to(device).requires_grad_()
            compiled(xd, wd, t.to(device)).backward()
            grads.append((xd.grad, wd.grad))
    assert getattr(BaseSchedulerNode.is_cpu, "_torch_sunrise", False)  # applied when the backend registered
    assert_same_as_cpu(grads[0], grads[1], rtol=None, atol=None)  # cross entropy's division: lowered apart


def test_dynamic_shapes_compile_once() -> None:
    counter = CompileCounterWithBackend("inductor")
    f = torch.compile(lambda x: torch.softmax(x, -1) * x.shape[0], backend=counter, dynamic=True)
    g = torch.compile(lambda x: torch.softmax(x, -1) * x.shape[0], dynamic=True)
    for n in (5, 7, 11):
        x = torch.randn(n, n + 3)
        assert_same_as_cpu(f(x.to("sunrise")), g(x))
    assert counter.frame_count == 1


def test_graph_break_and_fullgraph() -> None:
    def with_break(x: torch.Tensor) -> torch.Tensor:
        y = x.sin() * 2
        torch._dynamo.graph_break()
        return y.cos() + 1

    x = torch.randn(50)
    assert_same_as_cpu(torch.compile(with_break)(x.to("sunrise")), torch.compile(with_break)(x))
    f = torch.compile(lambda x: x.relu().sum(0), fullgraph=True)
    assert_same_as_cpu(f(x.to("sunrise")), f(x))


def test_control_flow_subgraphs() -> None:
    def fn(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.cond(p, lambda x: (x.sin() * 2).cos(), lambda x: x.exp() + 1, (x,))

    f = torch.compile(fn)
    x = torch.randn(16)
    for p in (True, False):
        assert_same_as_cpu(f(x.to("sunrise"), torch.tensor(p).to("sunrise")), f(x, torch.tensor(p)))


def test_random_ops_use_the_sunrise_generator() -> None:
    f = torch.compile(lambda x: torch.nn.functional.dropout(x, 0.5) + torch.rand_like(x))
    x = torch.ones(64, 64, device="sunrise")
    torch.sunrise.manual_seed(3)
    a = f(x)
    torch.sunrise.manual_seed(3)
    b = f(x)
    c = f(x)
    assert_same_as_cpu(a.cpu(), b.cpu(), device="cpu")  # reproducible after seeding
    assert not torch.equal(a.cpu(), c.cpu())  # fresh numbers on the next call
    kept = (a.cpu() >= 1).float().mean().item()  # dropout's survivors are 2 + U[0,1)
    assert 0.45 < kept < 0.55


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_inside_compiled_region(dtype: torch.dtype) -> None:
    def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        with torch.autocast("sunrise", dtype=dtype):
            return torch.nn.functional.gelu(x @ w)

    x, w = torch.randn(32, 64, device="sunrise"), torch.randn(64, 16, device="sunrise")
    got = torch.compile(fn)(x, w)
    assert got.dtype == dtype
    # The fused gelu rounds once to 16 bits, eager after each op.
    assert_close(got.float().cpu(), fn(x, w).float().cpu(), atol=2e-2, rtol=2e-2)


def test_factories_and_cpu_scalars_in_compiled_graphs() -> None:
    def fn(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x * scale + torch.arange(x.shape[0], device=x.device)

    x, scale = torch.randn(20), torch.tensor(3.5)  # a 0-dim CPU tensor beside device tensors, as in eager
    f = torch.compile(fn)
    assert_same_as_cpu(f(x.to("sunrise"), scale), f(x, scale))


def test_reduce_overhead_mode_runs() -> None:
    x = torch.randn(30)
    f = torch.compile(lambda x: x.exp() - 1, mode="reduce-overhead")
    assert_same_as_cpu(f(x.to("sunrise")), torch.compile(lambda x: x.exp() - 1)(x))


def test_cache_key_carries_torch_sunrise(monkeypatch: pytest.MonkeyPatch) -> None:
    # A compiled graph cached by one build of torch_sunrise is not served to another. (AOTAutograd's
    # cache, off here to count the FX graph cache alone, takes its key from the same details.)
    from torch._dynamo.utils import counters

    from torch_sunrise.inductor import codegen

    def compile_once() -> None:
        torch._dynamo.reset()
        torch.compile(lambda x: x * 5 - x.square())(torch.randn(13, device="sunrise"))

    with torch._functorch.config.patch(enable_autograd_cache=False):
        compile_once()
        hits = counters["inductor"]["fxgraph_cache_hit"]
        compile_once()
        assert counters["inductor"]["fxgraph_cache_hit"] == hits + 1
        another = os.urandom(16)  # the cache outlives the run: a fixed value would be found there next time
        monkeypatch.setattr(codegen, "_torch_sunrise_hash", lambda: another)
        misses = counters["inductor"]["fxgraph_cache_miss"]
        compile_once()
        assert counters["inductor"]["fxgraph_cache_miss"] == misses + 1


def test_device_interface() -> None:
    from torch._dynamo.device_interface import get_interface_for_device

    iface = get_interface_for_device("sunrise")
    assert get_interface_for_device("sunrise:1") is iface
    assert iface.device_count() == torch.sunrise.device_count()
    assert iface.current_stream() == torch.sunrise.current_stream()
    assert iface.get_raw_stream(0) == torch.sunrise.current_stream(0).sunrise_stream
    assert iface.is_bf16_supported()
    assert iface.Worker.get_device_properties(0).name == torch.sunrise.get_device_properties(0).name
    assert iface.exchange_device(1) == 0
    assert iface.exchange_device(0) == 1


@pytest.mark.parametrize("dynamo_first", [True, False])
def test_import_orders(run_python: Callable, dynamo_first: bool) -> None:
    imports = ["import torch._dynamo", "import torch_sunrise"] if dynamo_first else ["import torch_sunrise"]
    code = "\n".join([
        "import sys",
        "import torch",
        *imports,
        f"assert {dynamo_first} or 'torch._dynamo' not in sys.modules, 'import torch_sunrise imported Dynamo'",
        "f = torch.compile(lambda x: (x.sin() + x * 2).sum(-1))",
        "x = torch.randn(4, 8)",
        "assert torch.equal(f(x.to('sunrise')).cpu(), f(x))",
        "print('ok')",
    ])
    proc = run_python(code, env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"})
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)


def test_second_process_reuses_compiled_code(run_python: Callable) -> None:
    code = "\n".join([
        "import torch, torch_sunrise",
        "from torch._dynamo.utils import counters",
        "f = torch.compile(lambda x: torch.tanh(x) * 7 + x.sum())",
        "f(torch.randn(31, device='sunrise'))",
        "print(counters['inductor']['fxgraph_cache_hit'], counters['inductor']['fxgraph_cache_miss'])",
    ])
    run_python(code)
    proc = run_python(code)
    assert proc.returncode == 0 and proc.stdout.split()[-2:] == ["1", "0"], describe(proc)


def test_memcheck(run_python: Callable) -> None:
    # Under SUNRISE_MEMCHECK=1 device pointers have no host access: kernels reach device memory
    # through the kernel address mapping, or fault.
    proc = run_python(
        """
        import torch, torch_sunrise
        f = torch.compile(lambda a, b: torch.relu(a @ b) + a.sum(0))
        a, b = torch.randn(24, 24), torch.randn(24, 24)
        assert torch.equal(f(a.to("sunrise"), b.to("sunrise")).cpu(), f(a, b))
        print("ok")
        """,
        env={"SUNRISE_MEMCHECK": "1"},
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, describe(proc)
