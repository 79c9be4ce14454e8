"""out= and in-place semantics, whichever kernel runs: out tensors resized like CPU (with its
warning), written through strided views or a proxy, on another device; in-place ops on views and
slices, through shared storage, and overlap errors as on CPU.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.testing import assert_close


_g = torch.Generator().manual_seed(0)
X = torch.randn(4, 5, generator=_g)
Y = torch.randn(4, 5, generator=_g)


# ---------------------------------------------------------------------- out=


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


@pytest.mark.parametrize("start", [0, 2, 20, 100])
def test_out_arguments_are_resized_like_cpu(start: int) -> None:
    x = torch.randn(5, 4)
    out = torch.empty(start, device="sunrise")
    # Resizing an out= tensor that has elements is deprecated: CPU warns too.
    with pytest.warns(UserWarning, match="resized") if start else contextlib.nullcontext():
        r = torch.sin(x.sunrise(), out=out)
    assert r is out and out.shape == x.shape
    assert_close(out.cpu(), torch.sin(x))


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


def test_out_with_other_strides_goes_through_a_proxy() -> None:
    x = torch.randn(4, 6)
    out = torch.empty(6, 4, device="sunrise").t()  # transposed out
    torch.add(x.sunrise(), 1.0, out=out)
    assert out.stride() == (1, 4)
    assert_close(out.cpu(), x + 1.0)


@pytest.mark.two_devices
@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
def test_out_variant_on_device_1() -> None:
    o = torch.empty(0, device="sunrise:1")
    torch.cumsum(X.to("sunrise:1"), 0, out=o)
    assert o.device == torch.device("sunrise", 1)
    assert_close(o.cpu(), torch.cumsum(X, 0))


# ------------------------------------------------------------------ in-place


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


def test_in_place_with_self_overlap_errors_like_cpu() -> None:
    c = torch.arange(10.0)
    d = c.to("sunrise")
    with pytest.raises(RuntimeError, match="unsupported operation") as cpu_error:
        c[1:].add_(c[:-1])
    with pytest.raises(RuntimeError, match="unsupported operation") as dev_error:
        d[1:].add_(d[:-1])
    assert str(dev_error.value).splitlines()[0] == str(cpu_error.value).splitlines()[0]
    assert_close(d.cpu(), c)  # unchanged on both
