"""The generated structured kernels (csrc/aten/gen_structured_ops.py): they run natively as device
work, in stream order (mixed-dtype casts, in-place promotion, meta() functions that touch data),
asynchronously (errors surface at the next synchronization), with CPU's type promotion and output
geometry.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import fallback_calls, queue_slow_work


@pytest.mark.parametrize(
    "name, fn",
    [
        ("aten::add", lambda a, b: a + b),
        ("aten::mul", lambda a, b: a * b),
        ("aten::div", lambda a, b: a / (b.abs() + 1)),
        ("aten::mm", lambda a, b: a @ b.t()),
        ("aten::_softmax", lambda a, b: torch.softmax(a, -1)),
        ("aten::cumsum", lambda a, b: torch.cumsum(a, 0)),
        ("aten::sum", lambda a, b: a.sum(1)),
        ("aten::mean", lambda a, b: a.mean(0)),
        ("aten::gelu", lambda a, b: torch.nn.functional.gelu(a)),
        ("aten::silu", lambda a, b: torch.nn.functional.silu(a)),
        ("aten::topk", lambda a, b: torch.topk(a, 3, -1).values),
        ("aten::sort", lambda a, b: torch.sort(a, -1).values),
        ("aten::cat", lambda a, b: torch.cat([a, b], 0)),
        ("aten::gather", lambda a, b: torch.gather(a, 1, torch.zeros(8, 2, dtype=torch.long, device=a.device))),
        ("aten::eq", lambda a, b: a.eq(b)),
    ],
)
def test_structured_ops_run_natively_and_match_cpu(name: str, fn) -> None:
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    out = fn(a.sunrise(), b.sunrise())
    assert out.is_sunrise
    assert_close(out.cpu(), fn(a, b))
    assert fallback_calls(name) == 0, torch_sunrise.fallback_stats()


def test_mixed_dtype_inputs_are_cast_in_stream_order() -> None:
    # TensorIterator promotes mixed dtypes by casting inputs; that cast must
    # see the value produced by the previous (still queued) kernel.
    for _ in range(50):
        total = torch.full((1000,), 2, dtype=torch.long, device="sunrise").sum()
        assert (torch.zeros((), device="sunrise") + total).item() == 2000.0
    x = torch.randn(3, 4)
    for _ in range(20):
        xs = x.sunrise().requires_grad_()
        torch.amax(xs, 1).sum().backward()
        xc = x.clone().requires_grad_()
        torch.amax(xc, 1).sum().backward()
        assert_close(xs.grad.cpu(), xc.grad)


@pytest.mark.parametrize(
    "self_dtype, other_dtype, other_shape",
    [(torch.float16, torch.float32, ()), (torch.float16, torch.float32, (3,)), (torch.float32, torch.float64, (3,))],
)
def test_inplace_mixed_dtype_reads_self_in_stream_order(self_dtype, other_dtype, other_shape) -> None:
    # self of an in-place op is promoted by TensorIterator on the host; it must
    # see the value the queued fill produced.
    for _ in range(50):
        a = torch.full((3,), 6.75, dtype=self_dtype, device="sunrise")
        b = torch.full(other_shape, 0.5, dtype=other_dtype, device="sunrise")
        a.add_(b)
        assert_close(a.cpu(), torch.full((3,), 7.25, dtype=self_dtype))


def test_meta_functions_that_touch_data_stay_in_stream_order() -> None:
    # baddbmm's meta() copies self into the result (beta != 0): on sunrise
    # that copy is a device op queued behind the work that produces self.
    b1, b2 = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    for _ in range(10):
        queue_slow_work()
        s = torch.ones(2, 3, 5, device="sunrise") * 3
        out = torch.baddbmm(s, b1.sunrise(), b2.sunrise(), beta=0.5)
        assert_close(out.cpu(), torch.baddbmm(torch.full((2, 3, 5), 3.0), b1, b2, beta=0.5))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_output_reshaped_by_meta_matches_cpu(reduction: str) -> None:
    # mse_loss's meta() allocates an elementwise output and reduces it to 0-dim.
    a, b = torch.randn(6, 7), torch.randn(6, 7)
    out = torch.nn.functional.mse_loss(a.sunrise(), b.sunrise(), reduction=reduction)
    ref = torch.nn.functional.mse_loss(a, b, reduction=reduction)
    assert out.shape == ref.shape
    assert_close(out.cpu(), ref)
    target = torch.empty(0, device="sunrise")
    torch._C._nn.mse_loss(a.sunrise(), b.sunrise(), {"none": 0, "mean": 1, "sum": 2}[reduction], out=target)
    assert_close(target.cpu(), ref)


def test_cpu_scalars_and_type_promotion_match_cpu() -> None:
    i = torch.arange(6).view(2, 3)
    f = torch.randn(3, dtype=torch.float64)
    for fn in (lambda x, y: x + 0.5, lambda x, y: x * torch.tensor(2.5), lambda x, y: x / 2,
               lambda x, y: x + y, lambda x, y: torch.where(x > 2, x, y), lambda x, y: x.float().add_(y)):
        ref = fn(i, f)
        out = fn(i.sunrise(), f.sunrise())
        assert out.dtype == ref.dtype
        assert_close(out.cpu(), ref)
    with pytest.raises(RuntimeError, match="result type Float can't be cast"):
        i.sunrise().add_(0.5)


def test_device_work_is_asynchronous() -> None:
    a = torch.randn(1024, 1024, device="sunrise")
    torch.sunrise.synchronize()
    stream = torch.sunrise.current_stream()
    outs = [a @ a for _ in range(8)]  # hundreds of ms of queued device work
    pending = not stream.query()
    torch.sunrise.synchronize()
    assert pending, "matmuls ran on the host instead of being queued"
    assert_close(outs[-1].cpu(), a.cpu() @ a.cpu())


def test_errors_inside_kernels_surface_at_the_next_sync() -> None:
    index = torch.tensor([[0, 99]], device="sunrise")  # out of range: found by the kernel
    torch.gather(torch.zeros(1, 4, device="sunrise"), 1, index)
    with pytest.raises(RuntimeError, match="out of bounds"):
        torch.sunrise.synchronize()
    assert_close(torch.ones(2, device="sunrise").cpu(), torch.ones(2))  # device usable again
