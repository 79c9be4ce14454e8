"""The boxed CPU fallback: ops without sunrise kernels run on the CPU, correctly,
in stream order, with aliasing, out= and in-place semantics intact; counters,
modes (warn / silent / error), and random ops drawing from sunrise generators."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import describe


def to_dev(x, device="sunrise"):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, (list, tuple)):
        return type(x)(to_dev(v, device) for v in x)
    return x


def assert_same(dev_result, cpu_result, device=None) -> None:
    """Recursively: every tensor of the device result is a sunrise tensor (on
    ``device`` if given) equal to the CPU result."""
    if isinstance(cpu_result, torch.Tensor):
        assert isinstance(dev_result, torch.Tensor)
        assert dev_result.is_sunrise, dev_result.device
        if device is not None:
            assert dev_result.device == torch.device(device)
        assert dev_result.shape == cpu_result.shape
        assert_close(dev_result.cpu(), cpu_result)
    elif isinstance(cpu_result, (list, tuple)):
        assert len(dev_result) == len(cpu_result)
        for d, c in zip(dev_result, cpu_result):
            assert_same(d, c, device)
    else:
        assert dev_result == cpu_result


_g = torch.Generator().manual_seed(0)
X = torch.randn(4, 5, generator=_g)
Y = torch.randn(4, 5, generator=_g)
V = torch.randn(7, generator=_g)
IDX = torch.tensor([2, 0, 3])
INTS = torch.tensor([3, 1, 3, 2, 1, 5, 5])

# (id, function, CPU arguments). Each op runs on CPU arguments and on the same
# arguments moved to the device; results must match.
OPS = [
    ("sin", torch.sin, (X,)),
    ("matmul", torch.matmul, (X, Y.t())),
    ("cumsum", lambda x: torch.cumsum(x, 1), (X,)),
    ("sort", lambda x: torch.sort(x, 1), (X,)),
    ("sort_stable_desc", lambda x: torch.sort(x, dim=0, descending=True, stable=True), (X,)),
    ("topk", lambda x: torch.topk(x, 2), (X,)),
    ("index_select", lambda x, i: torch.index_select(x, 0, i), (X, IDX)),
    ("nonzero", lambda x: torch.nonzero(x > 0), (X,)),
    ("nonzero_as_tuple", lambda x: torch.nonzero(x > 0, as_tuple=True), (X,)),
    ("masked_select", lambda x: torch.masked_select(x, x > 0), (X,)),
    ("unique", lambda x: torch.unique(x, return_inverse=True, return_counts=True), (INTS,)),
    ("unique_consecutive", lambda x: torch.unique_consecutive(x, return_counts=True), (INTS,)),
    ("cat", lambda x, y: torch.cat([x, y], 1), (X, Y)),
    ("stack", lambda x, y: torch.stack([x, y]), (X, Y)),
    ("where", lambda x, y: torch.where(x > 0, x, y), (X, Y)),
    ("where_cond_only", lambda x: torch.where(x > 0), (X,)),
    ("max_dim", lambda x: torch.max(x, 1), (X,)),
    ("min_dim_keepdim", lambda x: torch.min(x, 0, keepdim=True), (X,)),
    ("max_all", torch.max, (X,)),
    ("sum_mean_std", lambda x: (x.sum(), x.mean(1), x.std(0)), (X,)),
    ("split", lambda x: torch.split(x, 2), (X,)),
    ("split_sizes", lambda x: torch.split(x, [1, 4], dim=1), (X,)),
    ("unbind", torch.unbind, (X,)),
    ("chunk", lambda x: torch.chunk(x, 3, dim=1), (X,)),
    ("gather", lambda x: torch.gather(x, 1, torch.tensor([[0, 1], [2, 2], [4, 0], [1, 1]]).to(x.device)), (X,)),
    ("argsort", lambda v: torch.argsort(v), (V,)),
    ("clamp_pow", lambda x: x.clamp(-0.5, 0.5).pow(2), (X,)),
    ("softmax", lambda x: torch.softmax(x, -1), (X,)),
    ("einsum", lambda x, y: torch.einsum("ij,kj->ik", x, y), (X, Y)),
    ("mixed_dtype_add", lambda x, i: x[:3, 0] + i, (X, IDX)),
    ("bool_ops", lambda x, y: ((x > 0) & (y < 0)) | (x == y), (X, Y)),
    ("int_div", lambda i: (torch.div(i, 2, rounding_mode="floor"), i % 2), (INTS,)),
    ("bfloat16_mm", lambda x, y: x.bfloat16() @ y.bfloat16().t(), (X, Y)),
    ("complex_abs", lambda x, y: torch.complex(x, y).abs(), (X, Y)),
    ("scalar_tensor_arg", lambda x: x * torch.tensor(2.5), (X,)),  # 0-dim CPU tensors are allowed
]


@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=i) for i, f, a in OPS])
def test_op_matches_cpu(fn, args) -> None:
    expected = fn(*args)
    actual = fn(*to_dev(args))
    assert_same(actual, expected, "sunrise:0")


@pytest.mark.two_devices
@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=i) for i, f, a in OPS[:12]])
def test_op_on_device_1_matches_cpu(fn, args) -> None:
    expected = fn(*args)
    actual = fn(*to_dev(args, "sunrise:1"))
    assert_same(actual, expected, "sunrise:1")
    assert torch.sunrise.current_device() == 0


# -------------------------------------------------------- mutation, out=


def test_scatter_() -> None:
    a = torch.zeros(3, 5)
    idx = torch.tensor([[0, 1, 2, 0, 0], [2, 0, 0, 1, 2]])
    src = torch.arange(10.0).view(2, 5)
    ad = a.to("sunrise")
    r = ad.scatter_(0, idx.to("sunrise"), src.to("sunrise"))
    a.scatter_(0, idx, src)
    assert r is ad
    assert_close(ad.cpu(), a)
    ad.scatter_add_(1, idx.to("sunrise"), src.to("sunrise"))
    a.scatter_add_(1, idx, src)
    assert_close(ad.cpu(), a)


@pytest.mark.parametrize("index_device", ["cpu", "sunrise"])
def test_index_put_(index_device) -> None:
    a = torch.zeros(6)
    ad = a.to("sunrise")
    i = torch.tensor([0, 3, 5])
    v = torch.tensor([1.0, 2.0, 3.0])
    r = ad.index_put_((i.to(index_device),), v.to("sunrise"))
    a.index_put_((i,), v)
    assert r is ad
    assert_close(ad.cpu(), a)
    ad.index_put_((i.to(index_device),), v.to("sunrise"), accumulate=True)
    a.index_put_((i,), v, accumulate=True)
    assert_close(ad.cpu(), a)
    # Advanced-indexing assignment, with integer and boolean indices.
    ad[torch.tensor([1, 2]).to(index_device)] = 7.0
    a[torch.tensor([1, 2])] = 7.0
    assert_close(ad.cpu(), a)
    mask = a > 2
    ad[mask.to(index_device)] = -1.0
    a[mask] = -1.0
    assert_close(ad.cpu(), a)
    m2 = torch.zeros(3, 4)
    m2d = m2.to("sunrise")
    rows, cols = torch.tensor([0, 2]), torch.tensor([1, 3])
    m2d[rows.to(index_device), cols.to(index_device)] = torch.tensor([5.0, 6.0]).to("sunrise")
    m2[rows, cols] = torch.tensor([5.0, 6.0])
    assert_close(m2d.cpu(), m2)


def test_indexing_reads_with_cpu_and_device_indices() -> None:
    c = torch.arange(12.0).view(3, 4)
    d = c.to("sunrise")
    i = torch.tensor([2, 0])
    m = torch.tensor([True, False, True, False])
    for idx in (i, i.to("sunrise")):
        assert_same(d[idx], c[i])
    for idx in (m, m.to("sunrise")):
        assert_same(d[:, idx], c[:, m])


@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
def test_out_variants_with_wrong_size_out_are_resized() -> None:
    # Empty out, too small out, too large out.
    for start in (0, 2, 100):
        o = torch.empty(start, device="sunrise")
        r = torch.sin(X.to("sunrise"), out=o)
        assert r is o and o.is_sunrise and o.shape == X.shape
        assert_close(o.cpu(), torch.sin(X))
    o = torch.empty(3, device="sunrise")
    torch.matmul(X.to("sunrise"), Y.to("sunrise").t(), out=o)
    assert_close(o.cpu(), X @ Y.t())
    o = torch.empty(1, device="sunrise")
    torch.cat([X.to("sunrise"), Y.to("sunrise")], out=o)
    assert_close(o.cpu(), torch.cat([X, Y]))
    # Multiple outputs.
    v = torch.empty(0, device="sunrise")
    i = torch.empty(7, dtype=torch.long, device="sunrise")
    rv, ri = torch.sort(X.to("sunrise"), 1, out=(v, i))
    assert rv is v and ri is i
    ev, ei = torch.sort(X, 1)
    assert_close(v.cpu(), ev)
    assert_close(i.cpu(), ei)
    # A data-dependent size.
    o = torch.empty(2, dtype=torch.long, device="sunrise")
    torch.nonzero(X.to("sunrise") > 0, out=o)
    assert_close(o.cpu(), torch.nonzero(X > 0))


@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
def test_out_variant_into_views() -> None:
    # A strided view of the right size is written in place.
    c = torch.zeros(4, 10)
    d = c.to("sunrise")
    torch.sin(X, out=c[:, ::2])
    torch.sin(X.to("sunrise"), out=d[:, ::2])
    assert_close(d.cpu(), c)
    # A view with an offset that has to grow (storage reallocated).
    cb = torch.zeros(10)
    db = cb.to("sunrise")
    co, do = cb[2:], db[2:]
    torch.cos(torch.ones(3, 3), out=co)
    torch.cos(torch.ones(3, 3, device="sunrise"), out=do)
    assert (do.shape, do.stride(), do.storage_offset()) == (co.shape, co.stride(), co.storage_offset())
    assert_close(do.cpu(), co)
    assert_close(db.cpu(), cb)


@pytest.mark.two_devices
@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
def test_out_variant_on_device_1() -> None:
    o = torch.empty(0, device="sunrise:1")
    torch.cumsum(X.to("sunrise:1"), 0, out=o)
    assert o.device == torch.device("sunrise", 1)
    assert_close(o.cpu(), torch.cumsum(X, 0))


def test_in_place_ops_on_views_and_slices() -> None:
    c = X.clone()
    d = c.to("sunrise")
    for op in (
        lambda t: t[1:3, ::2].mul_(2),
        lambda t: t.t()[0].sin_(),
        lambda t: t[:, 1].add_(torch.ones(4, device=t.device)),
        lambda t: t.diagonal().clamp_(min=0),
        lambda t: t[::2].exp_(),
        lambda t: t.view(20)[3:9].neg_(),
        lambda t: t.unfold(1, 2, 2).abs_(),
        lambda t: t[:, -1].copy_(t[:, 0]),
    ):
        r = op(d)
        op(c)
        assert r.is_sunrise
        assert_close(d.cpu(), c)


def test_in_place_with_self_overlap_errors_like_cpu() -> None:
    c = torch.arange(10.0)
    d = c.to("sunrise")
    with pytest.raises(RuntimeError, match="unsupported operation") as cpu_error:
        c[1:].add_(c[:-1])
    with pytest.raises(RuntimeError, match="unsupported operation") as dev_error:
        d[1:].add_(d[:-1])
    assert str(dev_error.value).splitlines()[0] == str(cpu_error.value).splitlines()[0]
    assert_close(d.cpu(), c)  # unchanged on both


@pytest.mark.parametrize(
    "view_fn",
    [
        pytest.param(lambda t: t.unfold(1, 2, 1), id="unfold"),
        pytest.param(lambda t: t.diagonal(), id="diagonal"),
        pytest.param(lambda t: t.diagonal(offset=1), id="diagonal_offset"),
        pytest.param(lambda t: t.t(), id="t"),
        pytest.param(lambda t: t[1:3, 1:], id="slice"),
        pytest.param(lambda t: t.narrow(1, 1, 3), id="narrow"),
        pytest.param(lambda t: t.split(2)[1], id="split"),
        pytest.param(lambda t: t.unbind(1)[2], id="unbind"),
        pytest.param(lambda t: t.chunk(2, 1)[1], id="chunk"),
        pytest.param(lambda t: t.movedim(0, 1), id="movedim"),
        pytest.param(lambda t: t.as_strided((2, 2), (5, 1), 3), id="as_strided"),
        pytest.param(lambda t: t.expand(2, 4, 5)[0], id="expand"),
    ],
)
def test_view_results_alias_device_memory(view_fn) -> None:
    c = X.clone()
    d = c.to("sunrise")
    cv = view_fn(c)
    dv = view_fn(d)
    assert dv.is_sunrise
    assert dv.untyped_storage().data_ptr() == d.untyped_storage().data_ptr()
    assert (dv.shape, dv.stride(), dv.storage_offset()) == (cv.shape, cv.stride(), cv.storage_offset())
    assert_close(dv.cpu(), cv)
    dv.mul_(-3)  # mutate the view: the source must change
    cv.mul_(-3)
    assert_close(d.cpu(), c)


def test_view_as_real_and_complex_alias() -> None:
    z = torch.randn(3, 2, dtype=torch.complex64)
    zd = z.to("sunrise")
    r, rd = torch.view_as_real(z), torch.view_as_real(zd)
    assert rd.data_ptr() == zd.data_ptr()
    assert_close(rd.cpu(), r)
    rd[..., 1].zero_()  # clear the imaginary parts through the real view
    r[..., 1].zero_()
    assert_close(zd.cpu(), z)
    f = torch.randn(4, 2)
    fd = f.to("sunrise")
    cz, czd = torch.view_as_complex(f), torch.view_as_complex(fd)
    assert czd.data_ptr() == fd.data_ptr()
    czd.mul_(2)
    cz.mul_(2)
    assert_close(fd.cpu(), f)


def test_in_place_metadata_ops() -> None:
    base = torch.arange(6.0).view(2, 3)
    for op in (
        lambda t: t.t_(),
        lambda t: t.unsqueeze_(0),
        lambda t: t.squeeze_(),
        lambda t: t.transpose_(0, 1),
        lambda t: t.as_strided_((2,), (2,), 1),
        lambda t: t.swapdims_(0, 1),
    ):
        c = base.clone()
        d = c.to("sunrise")
        rc, rd = op(c), op(d)
        assert rd is d
        assert (d.shape, d.stride(), d.storage_offset()) == (c.shape, c.stride(), c.storage_offset())
        assert_close(d.cpu(), rc)


@pytest.mark.two_devices
def test_factory_functions_on_device_1() -> None:
    cases = [
        (lambda dev: torch.linspace(0, 1, 5, device=dev), None),
        (lambda dev: torch.logspace(0, 2, 4, device=dev), None),
        (lambda dev: torch.eye(3, device=dev), None),
        (lambda dev: torch.tril_indices(3, 3, device=dev), None),
        (lambda dev: torch.full((2, 2), 3.0, device=dev), None),
        (lambda dev: torch.tril(torch.ones(3, 3, device=dev)), None),
        (lambda dev: torch.arange(5, device=dev), None),
        (lambda dev: torch.randperm(6, device=dev).sort().values, None),
        (lambda dev: torch.scalar_tensor(4.0, device=dev), None),
    ]
    for make, _ in cases:
        d = make("sunrise:1")
        assert d.device == torch.device("sunrise", 1)
        assert_close(d.cpu(), make("cpu"))
    assert torch.sunrise.current_device() == 0


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.LSTMCell, torch.nn.GRUCell])
def test_recurrent_layers(cls) -> None:
    torch.manual_seed(0)
    m = cls(4, 5)
    md = cls(4, 5)
    md.load_state_dict(m.state_dict())
    md.sunrise()
    x = torch.randn(3, 4)
    assert_same(md(x.sunrise()), m(x))


@pytest.mark.parametrize(
    "layer,shape",
    [
        pytest.param(lambda: torch.nn.Conv1d(3, 4, 3), (2, 3, 8), id="conv1d"),
        pytest.param(lambda: torch.nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6), id="conv2d"),
        pytest.param(lambda: torch.nn.ConvTranspose2d(3, 4, 3), (2, 3, 6, 6), id="conv_transpose2d"),
    ],
)
def test_convolution_layers(layer, shape) -> None:
    torch.manual_seed(0)
    m = layer()
    md = layer()
    md.load_state_dict(m.state_dict())
    md.sunrise()
    x = torch.randn(shape)
    assert_same(md(x.sunrise()), m(x))


@pytest.mark.parametrize(
    "layer,shape",
    [
        pytest.param(lambda: torch.nn.MaxPool2d(2), (2, 3, 6, 6), id="max_pool2d"),
        pytest.param(lambda: torch.nn.AdaptiveAvgPool2d(1), (2, 3, 6, 6), id="adaptive_avg_pool2d"),
        pytest.param(lambda: torch.nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 3, 3), id="upsample_bilinear"),
        pytest.param(lambda: torch.nn.GroupNorm(1, 3), (2, 3, 4, 4), id="group_norm"),
        pytest.param(lambda: torch.nn.LayerNorm(4), (2, 3, 4), id="layer_norm"),
        pytest.param(lambda: torch.nn.GELU(), (2, 3, 4), id="gelu"),
        pytest.param(
            lambda: torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), (2, 5, 8), id="transformer"
        ),
    ],
)
def test_common_layers(layer, shape) -> None:
    torch.manual_seed(0)
    m = layer()
    md = copy.deepcopy(m).sunrise()
    x = torch.randn(shape)
    assert_same(md(x.sunrise()), m(x))


def test_scaled_dot_product_attention() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 8, generator=g) for _ in range(3))
    for kwargs in ({}, {"is_causal": True}):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
        actual = torch.nn.functional.scaled_dot_product_attention(q.sunrise(), k.sunrise(), v.sunrise(), **kwargs)
        assert_same(actual, expected)


def test_recurrent_rnn_tanh() -> None:
    torch.manual_seed(0)
    m = torch.nn.RNN(4, 5, num_layers=2)
    md = torch.nn.RNN(4, 5, num_layers=2)
    md.load_state_dict(m.state_dict())
    md.sunrise()
    x = torch.randn(3, 2, 4)
    assert_same(md(x.sunrise()), m(x))


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
    d = X.to("sunrise")
    assert torch_sunrise.fallback_stats() == {}
    for _ in range(3):
        torch.histc(d, bins=4)
    torch.kthvalue(d, 1, 0)
    stats = torch_sunrise.fallback_stats()
    assert sum(v for k, v in stats.items() if k.startswith("aten::histc")) == 3, stats
    assert sum(v for k, v in stats.items() if k.startswith("aten::kthvalue")) == 1, stats
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
    d = X.to("sunrise")  # copies have kernels: allowed
    with pytest.raises(NotImplementedError, match=r"aten::histc") as info:
        torch.histc(d, bins=4)
    assert "SUNRISE_FALLBACK" in str(info.value)
    with pytest.raises(NotImplementedError, match=r"aten::kthvalue"):
        torch.kthvalue(d, 1, 0)
    assert torch_sunrise.fallback_stats() == {}
    # Core ops with kernels keep working.
    e = torch.empty(4, 5, device="sunrise")
    e.copy_(d)
    e.fill_(2.0)
    assert_close(e.cpu(), torch.full((4, 5), 2.0))
    assert_close(d.cpu(), X)
    fallback_mode("silent")
    assert_close(torch.histc(d, bins=4).cpu(), torch.histc(X, bins=4))


def test_warn_mode_warns_once_per_op(fallback_mode) -> None:
    fallback_mode("warn")
    d = X.to("sunrise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = torch.histc(d, bins=4)
        b = torch.histc(d, bins=4)
        c = torch.kthvalue(d, 1, 0).values
    messages = [str(w.message) for w in caught if "no sunrise kernel" in str(w.message)]
    assert len([m for m in messages if "aten::histc" in m]) == 1, messages
    assert len([m for m in messages if "aten::kthvalue" in m]) == 1, messages
    assert_close(a.cpu(), torch.histc(X, bins=4))
    assert_close(b.cpu(), torch.histc(X, bins=4))
    assert_close(c.cpu(), torch.kthvalue(X, 1, 0).values)
    # reset_fallback_stats re-arms the warnings.
    torch_sunrise.reset_fallback_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.histc(d, bins=4)
    assert any("aten::histc" in str(w.message) for w in caught)


def test_silent_mode_does_not_warn(fallback_mode) -> None:
    fallback_mode("silent")
    d = X.to("sunrise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = torch.histc(d, bins=4)
    assert not [w for w in caught if "no sunrise kernel" in str(w.message)]
    assert_close(r.cpu(), torch.histc(X, bins=4))
    assert sum(v for k, v in torch_sunrise.fallback_stats().items() if k.startswith("aten::histc")) == 1


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
        d = torch.arange(4.0).to("sunrise")
        try:
            torch.histc(d, bins=4)
        except NotImplementedError as e:
            print("raised:", str(e).splitlines()[0])
        else:
            raise SystemExit("no error")
        torch_sunrise.set_fallback_mode("silent")  # the API overrides the variable
        print("after:", torch.histc(d, bins=4).cpu().tolist())
        """,
        env={"SUNRISE_FALLBACK": "error"},
    )
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("raised:") and "aten::histc" in lines[0], describe(proc)
    values = [float(v) for v in lines[1].split(":", 1)[1].strip(" []").split(",")]
    assert_close(torch.tensor(values), torch.histc(torch.arange(4.0), bins=4))


def test_env_var_silent_and_default_warn_in_subprocess(run_python) -> None:
    code = """
        import warnings, torch, torch_sunrise
        d = torch.arange(4.0).to("sunrise")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.histc(d, bins=4); torch.histc(d, bins=4)
        print(torch_sunrise.get_fallback_mode(), sum("no sunrise kernel" in str(w.message) for w in caught))
    """
    silent = run_python(code, env={"SUNRISE_FALLBACK": "silent"})
    default = run_python(code)
    assert silent.returncode == 0, describe(silent)
    assert default.returncode == 0, describe(default)
    assert silent.stdout.split() == ["silent", "0"]
    assert default.stdout.split() == ["warn", "1"]


# ------------------------------------------------------------------ random


def test_manual_seed_makes_device_random_reproducible() -> None:
    torch.manual_seed(0)
    a = torch.randn(5, device="sunrise")
    a2 = torch.randn(5, device="sunrise")
    torch.manual_seed(0)
    b = torch.randn(5, device="sunrise")
    b2 = torch.randn(5, device="sunrise")
    assert_close(b.cpu(), a.cpu(), rtol=0, atol=0)
    assert_close(b2.cpu(), a2.cpu(), rtol=0, atol=0)
    assert not torch.equal(a.cpu(), a2.cpu())  # successive draws differ


def test_random_ops_reproducible() -> None:
    ops = [
        lambda: torch.rand(6, device="sunrise"),
        lambda: torch.randint(0, 100, (6,), device="sunrise"),
        lambda: torch.randperm(8, device="sunrise"),
        lambda: torch.nn.functional.dropout2d(torch.ones(1, 8, 2, 2, device="sunrise"), 0.5),
        lambda: torch.nn.functional.rrelu(-torch.ones(8, device="sunrise"), training=True),
        lambda: torch.bernoulli(torch.full((16,), 0.5, device="sunrise")),
        lambda: torch.multinomial(torch.ones(10, device="sunrise"), 5),
        lambda: torch.empty(6, device="sunrise").uniform_(-2, 2),
        lambda: torch.empty(6, device="sunrise").normal_(3, 0.1),
    ]
    for op in ops:
        torch.sunrise.manual_seed(123)
        first = op().cpu()
        torch.sunrise.manual_seed(123)
        second = op().cpu()
        assert_close(second, first, rtol=0, atol=0)


def test_dropout_draws_from_the_sunrise_generator() -> None:
    x = torch.ones(64, device="sunrise")
    torch.sunrise.manual_seed(123)
    torch.random.default_generator.manual_seed(1)
    a = torch.nn.functional.dropout(x, 0.5)
    torch.sunrise.manual_seed(123)
    torch.random.default_generator.manual_seed(2)  # a different CPU seed must not matter
    cpu_state = torch.random.default_generator.get_state()
    b = torch.nn.functional.dropout(x, 0.5)
    assert_close(torch.random.default_generator.get_state(), cpu_state, rtol=0, atol=0)
    assert_close(b.cpu(), a.cpu(), rtol=0, atol=0)


def test_dropout_is_correct_and_reproducible_with_global_seed() -> None:
    x = torch.randn(64)
    torch.manual_seed(0)
    a = torch.nn.functional.dropout(x.to("sunrise"), 0.25)
    torch.manual_seed(0)
    b = torch.nn.functional.dropout(x.to("sunrise"), 0.25)
    assert_close(b.cpu(), a.cpu(), rtol=0, atol=0)
    kept = a.cpu() != 0
    assert_close(a.cpu()[kept], x[kept] / 0.75)
    assert_close(torch.nn.functional.dropout(x.to("sunrise"), 0.25, training=False).cpu(), x)


def test_sunrise_seed_is_independent_of_cpu_seed() -> None:
    torch.sunrise.manual_seed(1)
    torch.random.default_generator.manual_seed(2)
    a = torch.randn(5, device="sunrise")
    torch.random.default_generator.manual_seed(3)  # only the CPU generator changes
    torch.sunrise.manual_seed(1)
    b = torch.randn(5, device="sunrise")
    assert_close(b.cpu(), a.cpu(), rtol=0, atol=0)
    assert torch.sunrise.initial_seed() == 1


def test_generator_objects() -> None:
    g = torch.Generator(device="sunrise")
    assert g.device == torch.device("sunrise", 0)
    g.manual_seed(3)
    assert g.initial_seed() == 3
    a = torch.randn(5, device="sunrise", generator=g)
    g.manual_seed(3)
    b = torch.randn(5, device="sunrise", generator=g)
    assert_close(b.cpu(), a.cpu(), rtol=0, atol=0)
    # An explicit generator does not advance the default one.
    torch.sunrise.manual_seed(9)
    ref = torch.randn(5, device="sunrise")
    torch.sunrise.manual_seed(9)
    torch.randn(5, device="sunrise", generator=g)
    assert_close(torch.randn(5, device="sunrise").cpu(), ref.cpu(), rtol=0, atol=0)
    # get_state / set_state on the generator.
    state = g.get_state()
    c = torch.rand(4, device="sunrise", generator=g)
    g.set_state(state)
    assert_close(torch.rand(4, device="sunrise", generator=g).cpu(), c.cpu(), rtol=0, atol=0)


def test_rng_state_round_trip() -> None:
    torch.sunrise.manual_seed(42)
    state = torch.sunrise.get_rng_state()
    assert state.dtype == torch.uint8 and state.device.type == "cpu"
    a = torch.randn(6, device="sunrise")
    b = torch.rand(3, device="sunrise")
    torch.sunrise.set_rng_state(state)
    assert_close(torch.randn(6, device="sunrise").cpu(), a.cpu(), rtol=0, atol=0)
    assert_close(torch.rand(3, device="sunrise").cpu(), b.cpu(), rtol=0, atol=0)
    states = torch.sunrise.get_rng_state_all()
    assert len(states) == torch.sunrise.device_count()
    x = [torch.randn(3, device=f"sunrise:{i}") for i in range(len(states))]
    torch.sunrise.set_rng_state_all(states)
    y = [torch.randn(3, device=f"sunrise:{i}") for i in range(len(states))]
    for p, q in zip(x, y):
        assert_close(q.cpu(), p.cpu(), rtol=0, atol=0)


def test_fork_rng_restores_device_state() -> None:
    torch.sunrise.manual_seed(5)
    with torch.random.fork_rng(devices=[0], device_type="sunrise"):
        inside = torch.randn(4, device="sunrise")
    after = torch.randn(4, device="sunrise")
    assert_close(after.cpu(), inside.cpu(), rtol=0, atol=0)


@pytest.mark.two_devices
def test_random_on_device_1_uses_device_1_generator() -> None:
    torch.sunrise.manual_seed_all(11)
    with torch.sunrise.device(1):
        state1 = torch.sunrise.get_rng_state()
    a = torch.randn(4, device="sunrise:1")
    torch.sunrise.manual_seed(99)  # reseeds device 0 only
    torch.sunrise.set_rng_state(state1, "sunrise:1")
    b = torch.randn(4, device="sunrise:1")
    assert_close(b.cpu(), a.cpu(), rtol=0, atol=0)
    g = torch.Generator(device="sunrise:1")
    g.manual_seed(2)
    c = torch.rand(3, device="sunrise:1", generator=g)
    g.manual_seed(2)
    assert_close(torch.rand(3, device="sunrise:1", generator=g).cpu(), c.cpu(), rtol=0, atol=0)
