"""Indexing: advanced indexing reads and writes (index, index_put_, boolean masks, CPU or device
indices), scatter/gather, embedding's backward, and the ops whose output shape depends on the data
(nonzero, masked_select, boolean index), which wait for the device as on CUDA.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from conftest import assert_same_as_cpu, no_fallback


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
        assert_same_as_cpu(d[idx], c[i])
    for idx in (m, m.to("sunrise")):
        assert_same_as_cpu(d[:, idx], c[:, m])


def test_arange_abs_index_native() -> None:
    with no_fallback():
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

    with no_fallback():
        got = run("sunrise")
    assert_close(got, run("cpu"), rtol=0, atol=0)


# ----------------------------------------------------- data-dependent shapes


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


def test_data_dependent_shape_errors_match_cpu() -> None:
    x = torch.randn(3, 4, device="sunrise")
    with pytest.raises(IndexError, match="does not match the shape of the indexed tensor"):
        x[torch.ones(4, dtype=torch.bool, device="sunrise")]
    with pytest.raises(RuntimeError, match="expected BoolTensor for mask"):
        torch.masked_select(x, torch.ones(3, 4, dtype=torch.long, device="sunrise"))
