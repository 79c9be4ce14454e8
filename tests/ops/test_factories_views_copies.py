"""Core tensor ops: allocation and factories (empty, empty_strided, zeros/ones/full, arange, eye,
linspace, ...), views (as_strided, view, reshape, view_as_real/complex, in-place metadata ops),
resize_, set_, copies in every direction, fill_, zero_, scalar reads and printing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from conftest import assert_same_as_cpu, describe, no_fallback, queue_slow_work


_g = torch.Generator().manual_seed(0)
X = torch.randn(4, 5, generator=_g)
Y = torch.randn(4, 5, generator=_g)


DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.bool,
    torch.complex64,
    torch.uint8,
]


DTYPE_IDS = [str(d).replace("torch.", "") for d in DTYPES]


def make(dtype: torch.dtype, shape=(3, 4), seed: int = 0) -> torch.Tensor:
    """Deterministic CPU data of any dtype (non-trivial values, no zeros-only)."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_complex:
        return torch.randn(shape, dtype=dtype, generator=g)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    return torch.randint(0, 100, shape, generator=g).to(dtype)


# -------------------------------------------------------------------- copies


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_copy_host_to_device_and_back(dtype) -> None:
    c = make(dtype)
    d = c.to("sunrise")
    assert d.device == torch.device("sunrise", 0) and d.dtype == dtype
    assert_same_as_cpu(d, c)
    # copy_ into an existing device tensor, and into an existing host tensor.
    e = torch.empty(3, 4, dtype=dtype, device="sunrise")
    e.copy_(c)
    h = torch.empty(3, 4, dtype=dtype)
    h.copy_(e)
    assert_same_as_cpu(h, c, device="cpu")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_copy_device_to_device_same_device(dtype) -> None:
    c = make(dtype)
    d = c.to("sunrise")
    e = torch.empty_like(d)
    e.copy_(d)
    assert e.data_ptr() != d.data_ptr()
    assert_same_as_cpu(e, c)
    f = d.clone()
    assert f.data_ptr() != d.data_ptr()
    assert_same_as_cpu(f, c)
    # The copies are independent of the source.
    d.zero_()
    assert_same_as_cpu(e, c)
    assert_same_as_cpu(f, c)


@pytest.mark.two_devices
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_copy_across_devices(dtype) -> None:
    c = make(dtype)
    d0 = c.to("sunrise:0")
    d1 = d0.to("sunrise:1")
    assert d1.device == torch.device("sunrise", 1)
    assert_same_as_cpu(d1, c)
    back = d1.to("sunrise:0")
    assert back.device == torch.device("sunrise", 0)
    assert_same_as_cpu(back, c)
    # copy_ between existing tensors, in both directions, from either current device.
    e1 = torch.empty(3, 4, dtype=dtype, device="sunrise:1")
    e1.copy_(d0)
    assert_same_as_cpu(e1, c)
    with torch.sunrise.device(1):
        e0 = torch.empty(3, 4, dtype=dtype, device="sunrise:0")
        e0.copy_(e1)
    assert_same_as_cpu(e0, c)


@pytest.mark.parametrize("src_dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dst_dtype", DTYPES, ids=DTYPE_IDS)
def test_dtype_converting_copies(src_dtype, dst_dtype) -> None:
    c = make(src_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex -> real discards the imaginary part, on CPU too
        expected = c.to(dst_dtype)
        d = c.to("sunrise")
        on_device = d.to(dst_dtype)  # device -> device, converting
        h2d = torch.empty(3, 4, dtype=dst_dtype, device="sunrise")
        h2d.copy_(c)  # host -> device, converting
        d2h = torch.empty(3, 4, dtype=dst_dtype)
        d2h.copy_(d)  # device -> host, converting
        both = c.to("sunrise", dtype=dst_dtype)
    assert on_device.is_sunrise and on_device.dtype == dst_dtype
    assert_same_as_cpu(on_device, expected)
    assert_same_as_cpu(h2d, expected)
    assert_same_as_cpu(d2h, expected, device="cpu")
    assert_same_as_cpu(both, expected)


@pytest.mark.two_devices
@pytest.mark.parametrize(
    "src_dtype,dst_dtype",
    [(torch.float32, torch.float16), (torch.int64, torch.float32), (torch.bool, torch.int32), (torch.bfloat16, torch.float32)],
)
def test_dtype_converting_copy_across_devices(src_dtype, dst_dtype) -> None:
    c = make(src_dtype)
    e = torch.empty(3, 4, dtype=dst_dtype, device="sunrise:1")
    e.copy_(c.to("sunrise:0"))
    assert_same_as_cpu(e, c.to(dst_dtype))


def test_noncontiguous_sources_and_destinations() -> None:
    c = torch.randn(4, 6)
    d = c.to("sunrise")
    # Device -> host from transposed / stepped views.
    assert_same_as_cpu(d.t(), c.t())
    assert_same_as_cpu(d[:, ::2], c[:, ::2])
    assert_same_as_cpu(d[1::2, 1::3], c[1::2, 1::3])
    # Host -> device from transposed / stepped views.
    assert_same_as_cpu(c.t().to("sunrise"), c.t())
    assert_same_as_cpu(c[::2, 1::3].to("sunrise"), c[::2, 1::3], strides=False)
    # Device -> device making a transposed view contiguous.
    t = d.t().contiguous()
    assert t.is_contiguous()
    assert_same_as_cpu(t, c.t().contiguous())
    # Into non-contiguous destinations.
    x = torch.zeros(4, 6, device="sunrise")
    x[:, ::2].copy_(c[:, :3])
    ref = torch.zeros(4, 6)
    ref[:, ::2] = c[:, :3]
    assert_same_as_cpu(x, ref)
    x = torch.zeros(4, 6, device="sunrise")
    x[:, 1::2].copy_(d[:, :3])
    ref = torch.zeros(4, 6)
    ref[:, 1::2] = c[:, :3]
    assert_same_as_cpu(x, ref)
    h = torch.zeros(6, 4).t()
    h.copy_(d)
    assert_same_as_cpu(h, c, device="cpu", strides=False)
    h = torch.zeros(6, 4)
    h.copy_(d.t())
    assert_same_as_cpu(h, c.t(), device="cpu", strides=False)


def test_expanded_and_broadcast_sources() -> None:
    row = torch.arange(6.0)
    expected = row.expand(4, 6)
    # Broadcasting copy_ from host and from device.
    x = torch.empty(4, 6, device="sunrise")
    x.copy_(row)
    assert_same_as_cpu(x, expected, strides=False)
    y = torch.empty(4, 6, device="sunrise")
    y.copy_(row.to("sunrise"))
    assert_same_as_cpu(y, expected, strides=False)
    # A one-element source fills everything.
    z = torch.empty(4, 6, device="sunrise")
    z.copy_(torch.tensor([2.5]))
    assert_same_as_cpu(z, torch.full((4, 6), 2.5))
    # Expanded (zero-stride) tensors as sources.
    e = row.to("sunrise").expand(4, 6)
    assert_same_as_cpu(e, expected)
    assert_same_as_cpu(e.contiguous(), expected, strides=False)
    assert_same_as_cpu(row.expand(4, 6).to("sunrise"), expected, strides=False)
    col = torch.arange(4.0).view(4, 1)
    assert_same_as_cpu(col.to("sunrise").expand(4, 6).clone(), col.expand(4, 6), strides=False)


@pytest.mark.two_devices
def test_noncontiguous_copies_across_devices() -> None:
    c = torch.randn(4, 6)
    x = torch.zeros(4, 6, device="sunrise:1")
    x.t().copy_(c.to("sunrise:0").t())
    assert_same_as_cpu(x, c)
    y = torch.zeros(6, 4, dtype=torch.float16, device="sunrise:1").t()
    y.copy_(c.to("sunrise:0"))
    assert_same_as_cpu(y, c.half(), strides=False)
    assert_same_as_cpu(c.to("sunrise:0")[:, ::2].to("sunrise:1"), c[:, ::2], strides=False)


def test_non_blocking_copy_from_pinned_memory() -> None:
    c = torch.randn(64, 32)
    pinned = c.pin_memory()
    assert pinned.is_pinned() and not c.is_pinned()
    d = torch.empty(64, 32, device="sunrise")
    d.copy_(pinned, non_blocking=True)
    d2 = pinned.to("sunrise", non_blocking=True)
    # A strided (transposed) pinned source, converting dtype.
    d3 = torch.empty(32, 64, dtype=torch.float64, device="sunrise")
    d3.copy_(pinned.t(), non_blocking=True)
    torch.sunrise.synchronize()
    assert_same_as_cpu(d, c)
    assert_same_as_cpu(d2, c)
    assert_same_as_cpu(d3, c.t().double(), strides=False)


def test_pinned_source_is_not_reused_before_the_async_copy_ran() -> None:
    n = 1 << 20
    for _ in range(3):
        src = torch.randn(n)
        pinned = src.pin_memory()
        d = pinned.to("sunrise", non_blocking=True)
        del pinned  # the block goes back to the pinned cache while the copy may be in flight
        other = torch.empty(n).pin_memory()
        other.fill_(0.0)  # must not land in the block the copy reads from
        torch.sunrise.synchronize()
        assert_same_as_cpu(d, src)


def test_non_blocking_copy_to_pinned_memory() -> None:
    c = torch.randn(64, 32)
    d = c.to("sunrise")
    h = torch.empty(64, 32).pin_memory()
    h.copy_(d, non_blocking=True)
    h2 = d.to("cpu", non_blocking=True)
    torch.sunrise.synchronize()
    assert_same_as_cpu(h, c, device="cpu")
    assert_same_as_cpu(h2, c, device="cpu")


def test_non_blocking_from_pageable_memory_is_still_correct() -> None:
    c = torch.randn(128)
    expected = c.clone()
    d = c.to("sunrise", non_blocking=True)
    c.zero_()  # a pageable source may be reused as soon as copy_ returns
    assert_same_as_cpu(d, expected)
    h = torch.empty(128)
    h.copy_(d, non_blocking=True)  # pageable destination: complete on return
    assert_same_as_cpu(h, expected, device="cpu")


@pytest.mark.two_devices
def test_non_blocking_pinned_copy_to_device_1() -> None:
    c = torch.randn(1000)
    d = c.pin_memory().to("sunrise:1", non_blocking=True)
    torch.sunrise.synchronize(1)
    assert_same_as_cpu(d, c)


def test_cpu_to_dtype_clone_on_device() -> None:
    c = torch.randn(3, 5)
    d = c.to("sunrise")
    assert_same_as_cpu(d, c)
    h = d.to(torch.float16)
    assert h.is_sunrise and h.dtype == torch.float16
    assert_same_as_cpu(h, c.half())
    i = d.to(torch.int32)
    assert_same_as_cpu(i, c.to(torch.int32))
    k = d.clone()
    assert k.is_sunrise and k.data_ptr() != d.data_ptr()
    assert_same_as_cpu(k, c)
    assert d.to("sunrise") is d  # no-op conversion returns self
    assert d.to(torch.float32) is d


def test_channels_last() -> None:
    c = torch.randn(2, 3, 4, 5)
    d = c.to("sunrise", memory_format=torch.channels_last)
    assert d.is_contiguous(memory_format=torch.channels_last)
    assert d.stride() == c.contiguous(memory_format=torch.channels_last).stride()
    assert_same_as_cpu(d, c, strides=False)
    e = c.to("sunrise").contiguous(memory_format=torch.channels_last)
    assert e.is_contiguous(memory_format=torch.channels_last)
    assert_same_as_cpu(e, c, strides=False)
    # clone and .cpu() preserve the layout, as on CPU.
    f = e.clone()
    assert f.stride() == c.contiguous(memory_format=torch.channels_last).clone().stride()
    assert_same_as_cpu(f, c, strides=False)
    assert e.cpu().stride() == c.contiguous(memory_format=torch.channels_last).stride()
    # A channels_last host tensor goes to the device keeping its strides.
    g = c.contiguous(memory_format=torch.channels_last).to("sunrise")
    assert g.stride() == c.contiguous(memory_format=torch.channels_last).stride()
    assert_same_as_cpu(g, c, strides=False)


def test_copy_from_conjugated_device_tensor(run_python) -> None:
    """Runs in a subprocess because the failure mode is a crash."""
    proc = run_python(
        """
        import torch
        from torch.testing import assert_close
        z = torch.randn(3, dtype=torch.complex64)
        zd = z.to("sunrise")
        assert_close(zd.conj().cpu(), z.conj())
        assert_close((zd.conj() * 2).cpu(), z.conj() * 2)
        assert zd.conj()[1].item() == z.conj()[1].item()
        assert_close(zd.conj().imag.cpu(), z.conj().imag)  # a negative view
        print("ok")
        """,
        env={"SUNRISE_FALLBACK": "silent"},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", describe(proc)


def test_conjugated_host_tensor_to_device() -> None:
    z = torch.randn(3, dtype=torch.complex64)
    assert_same_as_cpu(z.conj().to("sunrise"), z.conj())
    assert_same_as_cpu(z.conj_physical().to("sunrise"), z.conj())
    assert_same_as_cpu(z.to("sunrise").conj_physical(), z.conj_physical())


# ----------------------------------------------------------------- factories


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_empty_zeros_ones_full(dtype) -> None:
    e = torch.empty(2, 3, dtype=dtype, device="sunrise")
    ce = torch.empty(2, 3, dtype=dtype)
    assert (e.shape, e.dtype, e.stride()) == (ce.shape, ce.dtype, ce.stride())
    assert e.device == torch.device("sunrise", 0)
    assert_same_as_cpu(torch.zeros(2, 3, dtype=dtype, device="sunrise"), torch.zeros(2, 3, dtype=dtype))
    assert_same_as_cpu(torch.ones(2, 3, dtype=dtype, device="sunrise"), torch.ones(2, 3, dtype=dtype))
    assert_same_as_cpu(torch.full((2, 3), 1, dtype=dtype, device="sunrise"), torch.full((2, 3), 1, dtype=dtype))
    assert_same_as_cpu(torch.zeros_like(e), torch.zeros_like(ce))
    assert_same_as_cpu(torch.ones_like(e), torch.ones_like(ce))


def test_empty_shapes_and_zero_size() -> None:
    for shape in [(), (0,), (5,), (2, 0, 3), (1, 2, 3, 4)]:
        d = torch.empty(shape, device="sunrise")
        c = torch.empty(shape)
        assert d.shape == c.shape and d.stride() == c.stride() and d.numel() == c.numel()
        assert_same_as_cpu(torch.zeros(shape, device="sunrise"), torch.zeros(shape))
    e = torch.empty(2, 3, 4, 5, device="sunrise", memory_format=torch.channels_last)
    assert e.stride() == torch.empty(2, 3, 4, 5, memory_format=torch.channels_last).stride()


def test_empty_strided() -> None:
    for size, stride in [((2, 3), (1, 2)), ((2, 3), (3, 1)), ((4,), (2,)), ((2, 2), (0, 1))]:
        d = torch.empty_strided(size, stride, device="sunrise")
        c = torch.empty_strided(size, stride)
        assert d.shape == c.shape and d.stride() == c.stride()
        assert d.untyped_storage().nbytes() == c.untyped_storage().nbytes()
        d.fill_(3.0)
        c.fill_(3.0)
        assert_same_as_cpu(d, c)


@pytest.mark.two_devices
def test_factories_on_device_1() -> None:
    for d in (
        torch.empty(3, device="sunrise:1"),
        torch.zeros(3, device="sunrise:1"),
        torch.empty_strided((2, 2), (1, 2), device="sunrise:1"),
    ):
        assert d.device == torch.device("sunrise", 1)
        assert d.untyped_storage().device == torch.device("sunrise", 1)
    assert_same_as_cpu(torch.full((2, 2), 7, device="sunrise:1"), torch.full((2, 2), 7))
    assert torch.sunrise.current_device() == 0


def test_arange_and_randn() -> None:
    assert_same_as_cpu(torch.arange(10, device="sunrise"), torch.arange(10))
    assert_close(torch.arange(0, 1, 0.1, device="sunrise").cpu(), torch.arange(0, 1, 0.1))
    assert_close(
        torch.arange(-3, 3, 0.5, dtype=torch.float64, device="sunrise").cpu(),
        torch.arange(-3, 3, 0.5, dtype=torch.float64),
    )
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        r = torch.randn(2, 3, dtype=dtype, device="sunrise")
        c = torch.randn(2, 3, dtype=dtype)
        assert (r.shape, r.dtype, r.device.type) == (c.shape, c.dtype, "sunrise")
        assert torch.isfinite(r.cpu()).all()


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


def test_eye_native() -> None:
    with no_fallback():
        assert_close(torch.eye(3, device="sunrise").cpu(), torch.eye(3))
        assert_close(torch.eye(2, 5, dtype=torch.int64, device="sunrise").cpu(), torch.eye(2, 5, dtype=torch.int64))
        out = torch.empty(0, device="sunrise")
        torch.eye(4, out=out)
        assert_close(out.cpu(), torch.eye(4))
    with pytest.raises(RuntimeError, match="n must be greater or equal to 0"):
        torch.eye(-1, device="sunrise")


@pytest.mark.opinfo_regression
def test_efficientzerotensor_is_a_device_zero_tensor():
    z = torch._efficientzerotensor((2, 3), dtype=torch.float32, device="sunrise")
    z_cpu = torch._efficientzerotensor((2, 3), dtype=torch.float32)
    assert z.device.type == "sunrise" and z._is_zerotensor()
    assert_same_as_cpu(z, z_cpu.clone())
    assert_same_as_cpu(z + torch.ones(2, 3, device="sunrise"), z_cpu + torch.ones(2, 3))


# --------------------------------------------------------------------- views


def test_as_strided_aliases_storage() -> None:
    c = torch.arange(12.0)
    d = c.to("sunrise")
    v = d.as_strided((3, 3), (3, 1), 1)
    cv = c.as_strided((3, 3), (3, 1), 1)
    assert v.untyped_storage().data_ptr() == d.untyped_storage().data_ptr()
    assert v.storage_offset() == 1 and v.stride() == (3, 1)
    assert_same_as_cpu(v, cv)
    v.fill_(-1.0)
    cv.fill_(-1.0)
    assert_same_as_cpu(d, c)
    w = d.as_strided((2, 2), (1, 4), 2)
    cw = c.as_strided((2, 2), (1, 4), 2)
    w.zero_()
    cw.zero_()
    assert_same_as_cpu(d, c)


def test_view_and_reshape_alias_like_cpu() -> None:
    c = torch.arange(12.0)
    d = c.to("sunrise")
    v = d.view(3, 4)
    cv = c.view(3, 4)
    assert v.data_ptr() == d.data_ptr()
    v[1].zero_()
    cv[1].zero_()
    assert_same_as_cpu(d, c)
    r = d.reshape(4, 3)
    assert r.data_ptr() == d.data_ptr()  # contiguous: a view
    assert_same_as_cpu(r, c.reshape(4, 3))
    # Reshaping a transposed tensor must copy, as on CPU.
    t = v.t()
    rt = t.reshape(12)
    assert rt._is_view() == cv.t().reshape(12)._is_view()
    assert_same_as_cpu(rt, cv.t().reshape(12))
    # view with dtype reinterpretation.
    assert_same_as_cpu(d.view(torch.int32), c.view(torch.int32))
    with pytest.raises(RuntimeError):
        t.view(12)  # same error as on CPU


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


# ------------------------------------------------------------------- resize_


def test_resize_growing_keeps_old_contents() -> None:
    c = torch.arange(6.0)
    d = c.to("sunrise")
    d.resize_(20)
    assert d.shape == (20,)
    assert_same_as_cpu(d[:6], c)
    d.resize_(2, 3)
    assert_same_as_cpu(d, c.view(2, 3))
    d.resize_(0)
    assert d.numel() == 0
    d.resize_(6)
    assert_same_as_cpu(d, c)  # shrinking keeps the storage


def test_resize_from_empty_and_with_memory_format() -> None:
    d = torch.empty(0, device="sunrise")
    d.resize_(4, 5)
    d.fill_(2.0)
    assert_same_as_cpu(d, torch.full((4, 5), 2.0))
    e = torch.empty(0, device="sunrise")
    e.resize_(2, 3, 4, 5, memory_format=torch.channels_last)
    assert e.stride() == torch.empty(0).resize_(2, 3, 4, 5, memory_format=torch.channels_last).stride()


def test_resize_of_a_view_grows_the_shared_storage() -> None:
    c = torch.arange(8.0)
    d = c.to("sunrise")
    cv, dv = c[2:], d[2:]
    cv.resize_(10)
    dv.resize_(10)
    assert_same_as_cpu(d, c)  # the base still reads its elements
    assert_same_as_cpu(dv[:6], cv[:6])
    assert dv.untyped_storage().nbytes() == cv.untyped_storage().nbytes()


@pytest.mark.two_devices
def test_resize_on_device_1() -> None:
    c = torch.arange(4.0)
    d = c.to("sunrise:1")
    d.resize_(100)
    assert d.untyped_storage().device == torch.device("sunrise", 1)
    assert_same_as_cpu(d[:4], c)


def test_resize_as_() -> None:
    c = torch.arange(6.0)
    d = c.to("sunrise")
    d.resize_as_(torch.empty(2, 3))
    assert_same_as_cpu(d, c.view(2, 3))


def test_queued_work_reads_the_bytes_of_launch_time_across_a_resize() -> None:
    # resize_ moves x to a new block (old bytes copied in stream order); an op
    # queued before must read the old block, and ops after the new one.
    queue_slow_work()
    x = torch.arange(4.0, device="sunrise")
    y = x * 2
    x.resize_(1 << 16)
    x[:4].fill_(-1)
    z = x[:4] * 2
    assert_close(y.cpu(), torch.arange(4.0) * 2, rtol=0, atol=0)
    assert_close(z.cpu(), torch.full((4,), -2.0), rtol=0, atol=0)


# ---------------------------------------------------------------------- set_


def test_set_tensor_aliases() -> None:
    c = torch.arange(6.0)
    d = c.to("sunrise")
    e = torch.empty(0, device="sunrise")
    ce = torch.empty(0)
    e.set_(d)
    ce.set_(c)
    assert e.data_ptr() == d.data_ptr()
    e[0] = 5.0
    ce[0] = 5.0
    assert_same_as_cpu(d, c)
    # set_ from a view keeps its offset, sizes and strides.
    f = torch.empty(0, device="sunrise")
    cf = torch.empty(0)
    f.set_(d[2:].view(2, 2))
    cf.set_(c[2:].view(2, 2))
    assert (f.shape, f.stride(), f.storage_offset()) == (cf.shape, cf.stride(), cf.storage_offset())
    f.add_(1)
    cf.add_(1)
    assert_same_as_cpu(d, c)


def test_set_storage_variants() -> None:
    c = torch.arange(6.0)
    d = c.to("sunrise")
    g = torch.empty(0, device="sunrise")
    g.set_(d.untyped_storage())
    assert_same_as_cpu(g, torch.empty(0).set_(c.untyped_storage()))
    h = torch.empty(0, device="sunrise")
    h.set_(d.untyped_storage(), 2, (2, 2), (1, 2))
    assert_same_as_cpu(h, torch.empty(0).set_(c.untyped_storage(), 2, (2, 2), (1, 2)))
    h.fill_(-1.0)
    torch.empty(0).set_(c.untyped_storage(), 2, (2, 2), (1, 2)).fill_(-1.0)
    assert_same_as_cpu(d, c)
    # Growing through set_ enlarges the storage, as on CPU.
    k = torch.empty(0, device="sunrise")
    k.set_(torch.empty(0, device="sunrise").untyped_storage(), 0, (3,), (1,))
    assert k.untyped_storage().nbytes() >= 12


def test_set_empty() -> None:
    d = torch.ones(3, device="sunrise")
    d.set_()
    c = torch.ones(3).set_()
    assert d.shape == c.shape and d.numel() == 0
    assert d.device == torch.device("sunrise", 0)
    d.resize_(2)
    d.fill_(4.0)
    assert_same_as_cpu(d, torch.full((2,), 4.0))


@pytest.mark.two_devices
def test_set_empty_on_device_1() -> None:
    d = torch.ones(3, device="sunrise:1")
    d.set_()
    assert d.numel() == 0 and d.untyped_storage().device == torch.device("sunrise", 1)
    d.resize_(2)
    d.fill_(4.0)
    assert_same_as_cpu(d, torch.full((2,), 4.0))


@pytest.mark.two_devices
def test_set_storage_on_device_1() -> None:
    c = torch.arange(6.0)
    d = c.to("sunrise:1")
    e = torch.empty(0, device="sunrise:1")
    e.set_(d.untyped_storage(), 1, (3,), (2,))
    assert_same_as_cpu(e, torch.empty(0).set_(c.untyped_storage(), 1, (3,), (2,)))


# -------------------------------------------------------------- fill_, zero_


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fill_and_zero(dtype) -> None:
    c = make(dtype, (4, 6))
    d = c.to("sunrise")
    d.fill_(1)
    c.fill_(1)
    assert_same_as_cpu(d, c)
    d.zero_()
    c.zero_()
    assert_same_as_cpu(d, c)
    # On strided views only the view's elements change.
    d[:, ::2].fill_(1)
    c[:, ::2].fill_(1)
    assert_same_as_cpu(d, c)
    d.t()[1:3].zero_()
    c.t()[1:3].zero_()
    assert_same_as_cpu(d, c)
    # fill_ with 0-dim tensors, from the host and from the device.
    d.fill_(torch.tensor(1, dtype=dtype))
    c.fill_(torch.tensor(1, dtype=dtype))
    assert_same_as_cpu(d, c)
    d.fill_(torch.tensor(0, dtype=dtype, device="sunrise"))
    c.fill_(torch.tensor(0, dtype=dtype))
    assert_same_as_cpu(d, c)


def test_fill_values() -> None:
    for value in (3.5, -2, True, float("inf")):
        d = torch.empty(5, device="sunrise").fill_(value)
        assert_same_as_cpu(d, torch.empty(5).fill_(value))
    z = torch.empty(3, dtype=torch.complex64, device="sunrise").fill_(1 + 2j)
    assert_same_as_cpu(z, torch.empty(3, dtype=torch.complex64).fill_(1 + 2j))
    e = torch.ones(2, 3, device="sunrise").expand(4, 2, 3)
    assert_same_as_cpu(e, torch.ones(4, 2, 3), strides=False)


@pytest.mark.two_devices
def test_fill_and_zero_on_device_1() -> None:
    d = torch.empty(4, 4, device="sunrise:1")
    d.fill_(2.0)
    assert_same_as_cpu(d, torch.full((4, 4), 2.0))
    d[1:3].zero_()
    c = torch.full((4, 4), 2.0)
    c[1:3].zero_()
    assert_same_as_cpu(d, c)
    d.fill_(torch.tensor(9.0, device="sunrise:0"))  # value on another device, as CUDA allows
    assert_same_as_cpu(d, torch.full((4, 4), 9.0))


# --------------------------------------------- item, tolist, numpy, printing


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_item_tolist_numpy(dtype) -> None:
    c = make(dtype, (2, 3))
    d = c.to("sunrise")
    for idx in [(0, 0), (1, 2), (0, 1)]:
        assert d[idx].item() == c[idx].item()
    assert d[1, 1:2].item() == c[1, 1:2].item()
    assert d.t()[2, 1].item() == c.t()[2, 1].item()
    assert d.tolist() == c.tolist()
    assert d.t().tolist() == c.t().tolist()
    if dtype != torch.bfloat16:  # numpy has no bfloat16
        np.testing.assert_array_equal(d.cpu().numpy(), c.numpy())
        assert_same_as_cpu(torch.from_numpy(d.cpu().numpy()), c, device="cpu")


def test_item_of_zero_dim_and_errors() -> None:
    d = torch.tensor(3.25, device="sunrise")
    assert d.item() == torch.tensor(3.25).item()
    assert float(d) == 3.25 and int(torch.tensor(7, device="sunrise")) == 7
    assert bool(torch.tensor(True, device="sunrise"))
    with pytest.raises(RuntimeError, match="elements cannot be converted to Scalar"):
        torch.ones(2, device="sunrise").item()


@pytest.mark.two_devices
def test_item_on_device_1() -> None:
    c = torch.arange(5.0)
    d = c.to("sunrise:1")
    assert d[3].item() == c[3].item()
    assert d.tolist() == c.tolist()


def test_printing_a_tensor_does_not_fall_back(fallback_mode) -> None:
    fallback_mode("error")
    x = torch.tensor([[1.5, -2.25, float("inf")], [0.0, float("nan"), 3.0]])
    assert str(x.to("sunrise")) == str(x).replace(")", ", device='sunrise:0')")
