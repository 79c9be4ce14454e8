"""Native sunrise kernels for structured ops: device work, stream order, results equal to CPU."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise


@pytest.fixture(autouse=True)
def _reset_stats():
    torch_sunrise.reset_fallback_stats()
    yield


def _fallbacks(prefix: str) -> int:
    return sum(v for k, v in torch_sunrise.fallback_stats().items() if k.startswith(prefix))


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
    assert _fallbacks(name) == 0, torch_sunrise.fallback_stats()


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


@pytest.mark.parametrize("start", [0, 2, 20, 100])
def test_out_arguments_are_resized_like_cpu(start: int) -> None:
    x = torch.randn(5, 4)
    out = torch.empty(start, device="sunrise")
    # Resizing an out= tensor that has elements is deprecated: CPU warns too.
    with pytest.warns(UserWarning, match="resized") if start else contextlib.nullcontext():
        r = torch.sin(x.sunrise(), out=out)
    assert r is out and out.shape == x.shape
    assert_close(out.cpu(), torch.sin(x))


def test_out_with_other_strides_goes_through_a_proxy() -> None:
    x = torch.randn(4, 6)
    out = torch.empty(6, 4, device="sunrise").t()  # transposed out
    torch.add(x.sunrise(), 1.0, out=out)
    assert out.stride() == (1, 4)
    assert_close(out.cpu(), x + 1.0)


def test_inplace_ops_and_views_share_storage() -> None:
    c = torch.arange(12.0).view(3, 4)
    d = c.sunrise()
    d[1].mul_(10)
    c[1].mul_(10)
    d.add_(torch.ones(4, device="sunrise"))
    c.add_(torch.ones(4))
    assert_close(d.cpu(), c)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        torch.ones(3, 1, device="sunrise").add_(torch.ones(3, 4, device="sunrise"))


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


def test_module_to_keeps_parameter_identity_and_ties() -> None:
    lin = torch.nn.Linear(2, 2)
    weight = lin.weight
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    lin.to("sunrise")
    assert lin.weight is weight and weight.is_sunrise
    lin(torch.ones(1, 2, device="sunrise")).sum().backward()
    opt.step()  # updates the parameters the module uses
    emb = torch.nn.Embedding(4, 2)
    head = torch.nn.Linear(2, 4, bias=False)
    head.weight = emb.weight
    emb.to("sunrise")
    head.to("sunrise")
    assert head.weight is emb.weight


# ------------------------------------------ non-structured hot ops, as device work
class _no_fallback:  # noqa: N801 - used like a function
    """SUNRISE_FALLBACK=error inside: any CPU fallback raises."""

    def __enter__(self):
        self.mode = torch_sunrise.get_fallback_mode()
        torch_sunrise.set_fallback_mode("error")

    def __exit__(self, *exc):
        torch_sunrise.set_fallback_mode(self.mode)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_forward_backward_native(dtype, affine) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=dtype)
    w, b = (torch.randn(8, dtype=dtype), torch.randn(8, dtype=dtype)) if affine else (None, None)
    grad = torch.randn(3, 5, 8, dtype=dtype)

    def run(device):
        xs = x.to(device).requires_grad_()
        ws = w.to(device).requires_grad_() if affine else None
        bs = b.to(device).requires_grad_() if affine else None
        out, mean, rstd = torch.native_layer_norm(xs, (8,), ws, bs, 1e-5)
        out.backward(grad.to(device))
        grads = [t.grad.cpu() for t in (xs, ws, bs) if t is not None]
        return [out.detach().cpu(), mean.cpu(), rstd.cpu()] + grads

    with _no_fallback():
        got = run("sunrise")
    for g, e in zip(got, run("cpu")):
        assert g.dtype == e.dtype and g.shape == e.shape
        assert_close(g, e, rtol=0, atol=0)


def test_layer_norm_mixed_dtype_and_bad_shape() -> None:
    x = torch.randn(4, 6, dtype=torch.bfloat16)
    w, b = torch.randn(6), torch.randn(6)
    with _no_fallback():
        got = torch.native_layer_norm(x.sunrise(), (6,), w.sunrise(), b.sunrise(), 1e-5)
    for g, e in zip(got, torch.native_layer_norm(x, (6,), w, b, 1e-5)):
        assert g.dtype == e.dtype
        assert_close(g.cpu(), e, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="normalized_shape"):
        torch.nn.functional.layer_norm(torch.randn(4, 6, device="sunrise"), (5,))


@pytest.mark.parametrize("padding_idx, scale", [(None, False), (2, True)])
def test_embedding_backward_native(padding_idx, scale) -> None:
    weight = torch.randn(10, 4)
    idx = torch.tensor([[1, 2, 2], [9, 0, 2]])
    grad = torch.randn(2, 3, 4)

    def run(device):
        w = weight.to(device).requires_grad_()
        torch.nn.functional.embedding(idx.to(device), w, padding_idx=padding_idx,
                                      scale_grad_by_freq=scale).backward(grad.to(device))
        return w.grad.cpu()

    with _no_fallback():
        got = run("sunrise")
    assert_close(got, run("cpu"), rtol=0, atol=0)


def test_dropout_backward_native_matches_its_mask() -> None:
    x = torch.randn(64, 32, device="sunrise", requires_grad=True)
    with _no_fallback():
        y = torch.nn.functional.dropout(x, p=0.3, training=True)
        y.backward(torch.ones_like(y))
    kept = (y.detach() != 0).cpu()
    assert_close(x.grad.cpu(), kept.float() / 0.7)


def test_arange_abs_index_native() -> None:
    with _no_fallback():
        assert_close(torch.arange(3, 17, 2, device="sunrise").cpu(), torch.arange(3, 17, 2))
        assert_close(torch.arange(0.5, 2.0, 0.25, device="sunrise").cpu(), torch.arange(0.5, 2.0, 0.25))
        x = torch.randn(5, 6)
        assert_close(x.sunrise().abs().cpu(), x.abs())
        out = torch.empty(0, device="sunrise")
        torch.abs(x.sunrise(), out=out)
        assert_close(out.cpu(), x.abs())
        rows, cols = torch.tensor([0, 4, 2]), torch.tensor([[1], [3]])
        assert_close(x.sunrise()[rows.sunrise()].cpu(), x[rows])
        assert_close(x.sunrise()[cols.sunrise(), rows.sunrise()].cpu(), x[cols, rows])
        assert_close(x.sunrise()[:, rows].cpu(), x[:, rows])  # CPU index tensors are accepted, as on CUDA
    mask = x > 0
    assert_close(x.sunrise()[mask.sunrise()].cpu(), x[mask])  # data-dependent shape: synchronizes
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        torch.arange(0, 3, 0, device="sunrise")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.complex64])
@pytest.mark.parametrize("dim, correction, keepdim", [(None, None, False), (1, 0, True), ((0, 2), 2, False)])
def test_var_std_native(dtype, dim, correction, keepdim) -> None:
    x = torch.randn(4, 5, 6, dtype=dtype)
    with _no_fallback():
        for fn in (torch.var, torch.std):
            got = fn(x.sunrise(), dim, correction=correction, keepdim=keepdim)
            expected = fn(x, dim, correction=correction, keepdim=keepdim)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert_close(got.cpu(), expected, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="floating point and complex"):
        torch.var(torch.ones(3, dtype=torch.long, device="sunrise"))


def test_eye_native() -> None:
    with _no_fallback():
        assert_close(torch.eye(3, device="sunrise").cpu(), torch.eye(3))
        assert_close(torch.eye(2, 5, dtype=torch.int64, device="sunrise").cpu(), torch.eye(2, 5, dtype=torch.int64))
        out = torch.empty(0, device="sunrise")
        torch.eye(4, out=out)
        assert_close(out.cpu(), torch.eye(4))
    with pytest.raises(RuntimeError, match="n must be greater or equal to 0"):
        torch.eye(-1, device="sunrise")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool])
def test_dropout_backward_dtypes_match_cpu(dtype) -> None:
    grad = torch.randint(0, 3, (4, 5)).to(dtype)
    mask = torch.rand(4, 5) > 0.3
    with _no_fallback():
        got = torch.ops.aten.native_dropout_backward(grad.sunrise(), mask.sunrise(), 1.25)
    expected = torch.ops.aten.native_dropout_backward(grad, mask, 1.25)
    assert got.dtype == expected.dtype
    assert_close(got.cpu(), expected, rtol=0, atol=0)


def _queue_slow_work() -> None:
    w = torch.randn(1024, 1024, device="sunrise")
    for _ in range(4):
        w = w @ w / 1024


def test_queued_work_reads_the_bytes_of_launch_time_across_a_resize() -> None:
    # resize_ moves x to a new block (old bytes copied in stream order); an op
    # queued before must read the old block, and ops after the new one.
    _queue_slow_work()
    x = torch.arange(4.0, device="sunrise")
    y = x * 2
    x.resize_(1 << 16)
    x[:4].fill_(-1)
    z = x[:4] * 2
    assert_close(y.cpu(), torch.arange(4.0) * 2, rtol=0, atol=0)
    assert_close(z.cpu(), torch.full((4,), -2.0), rtol=0, atol=0)


def test_meta_functions_that_touch_data_stay_in_stream_order() -> None:
    # baddbmm's meta() copies self into the result (beta != 0): on sunrise
    # that copy is a device op queued behind the work that produces self.
    b1, b2 = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    for _ in range(10):
        _queue_slow_work()
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("m, k, n", [(32, 64, 64), (1, 512, 2048), (1, 512, 8000), (5, 17, 3), (128, 64, 64), (96, 256, 384)])
def test_matrix_products_are_bitwise_cpu_small_and_large(dtype, m, k, n) -> None:
    # Small products run on the device thread alone (SerialMathScope), larger
    # ones with the full team; both must give CPU eager's bits exactly.
    g = torch.Generator().manual_seed(m * k + n)
    a, b, c = (torch.randn(s, generator=g, dtype=dtype) for s in ((m, k), (k, n), (n,)))
    a3, b3 = torch.randn(3, m, k, generator=g, dtype=dtype), torch.randn(3, k, n, generator=g, dtype=dtype)
    cases = [
        lambda a, b, c, a3, b3: torch.mm(a, b),
        lambda a, b, c, a3, b3: torch.addmm(c, a, b, beta=0.5, alpha=2),
        lambda a, b, c, a3, b3: torch.nn.functional.linear(a, b.t(), c),
        lambda a, b, c, a3, b3: torch.bmm(a3, b3),
        lambda a, b, c, a3, b3: torch.baddbmm(c.expand(3, m, n), a3, b3),
        lambda a, b, c, a3, b3: torch.addmv(c, b.t(), a[0]),
    ]
    cpu_args = (a, b, c, a3, b3)
    dev_args = tuple(t.to("sunrise") for t in cpu_args)
    for fn in cases:
        assert torch.equal(fn(*dev_args).cpu(), fn(*cpu_args))
    assert _fallbacks("aten::") == 0, torch_sunrise.fallback_stats()


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool, torch.bfloat16])
@pytest.mark.parametrize("shape", [(0,), (7,), (3, 5), (2, 3, 4), ()])
def test_data_dependent_shapes_are_native_and_match_cpu(fallback_mode, dtype, shape) -> None:
    fallback_mode("error")
    g = torch.Generator().manual_seed(len(shape))
    x = (torch.randn(shape, generator=g) * 2).round().to(dtype)
    mask = torch.rand(shape, generator=g) > 0.5
    d, dm = x.to("sunrise"), mask.to("sunrise")
    assert torch.equal(torch.nonzero(d).cpu(), torch.nonzero(x))
    assert torch.equal(torch.masked_select(d, dm).cpu(), torch.masked_select(x, mask))
    assert torch.equal(d[dm].cpu(), x[mask])
    assert torch.nonzero(d).stride() == torch.nonzero(x).stride()
    for make_out in (lambda: torch.empty(0, dtype=torch.long), lambda: torch.empty(torch.nonzero(x).shape[::-1]).long().t()):
        out, cpu_out = make_out().to("sunrise"), make_out()
        assert torch.equal(torch.nonzero(d, out=out).cpu(), torch.nonzero(x, out=cpu_out))
        assert out.stride() == cpu_out.stride()
    if x.dim() >= 1:  # a mask over the leading dim, and one broadcast against the input
        row = torch.arange(x.shape[0]) % 2 == 0
        assert torch.equal(d[row.to("sunrise")].cpu(), x[row])
        assert torch.equal(torch.masked_select(d, dm[..., :1]).cpu(), torch.masked_select(x, mask[..., :1]))


def test_printing_a_tensor_does_not_fall_back(fallback_mode) -> None:
    fallback_mode("error")
    x = torch.tensor([[1.5, -2.25, float("inf")], [0.0, float("nan"), 3.0]])
    assert str(x.to("sunrise")) == str(x).replace(")", ", device='sunrise:0')")


def test_data_dependent_shape_errors_match_cpu() -> None:
    x = torch.randn(3, 4, device="sunrise")
    with pytest.raises(IndexError, match="does not match the shape of the indexed tensor"):
        x[torch.ones(4, dtype=torch.bool, device="sunrise")]
    with pytest.raises(RuntimeError, match="expected BoolTensor for mask"):
        torch.masked_select(x, torch.ones(3, 4, dtype=torch.long, device="sunrise"))
