"""Everyday ops that training loops call every step run as device work, not through the synchronous
CPU fallback: ``x[idx] = v`` and ``index_put_`` (accumulate too), ``//``, ``logsigmoid`` and its
backward, ``mse_loss``'s backward, ``torch.equal``. Each is compared bitwise with the CPU, runs with
the fallback forbidden, and is ordered after queued device work on its stream."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_as_cpu

Case = Callable[[torch.Tensor], object]


def _index_put(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[torch.tensor([1, 3, 3], device=x.device)] = torch.arange(3.0, device=x.device).unsqueeze(1)
    return y


def _index_put_accumulate(x: torch.Tensor) -> torch.Tensor:
    return x.clone().index_put_((torch.tensor([0, 2, 2], device=x.device),), torch.ones(3, 5, device=x.device),
                                accumulate=True)


def _masked_assign(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[y > 0] = -1.0
    return y


def _logsigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_()
    F.logsigmoid(x).sum().backward()
    return x.grad


def _mse_grad(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_()
    F.mse_loss(x, torch.full_like(x, 0.5)).backward()
    return x.grad


CASES: dict[str, Case] = {
    "x[idx] = v": _index_put,
    "index_put_ accumulate": _index_put_accumulate,
    "x[mask] = v": _masked_assign,
    "floor_divide": lambda x: (x * 10).long() // 3,
    "floor_divide float": lambda x: torch.floor_divide(x, 0.3),
    "logsigmoid": F.logsigmoid,
    "logsigmoid backward": _logsigmoid_grad,
    "mse_loss backward": _mse_grad,
}


@pytest.mark.no_fallback
@pytest.mark.parametrize("name", CASES)
def test_runs_on_the_device_with_cpus_bits(name: str) -> None:
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    # The input is the result of queued device work: the op must wait for it on the stream.
    dev = torch.mm(x.to("sunrise"), torch.eye(5, device="sunrise"))
    assert_same_as_cpu(CASES[name](dev), CASES[name](torch.mm(x, torch.eye(5))))


@pytest.mark.no_fallback
def test_equal_answers_after_queued_work() -> None:
    x = torch.randn(64, 64)
    a = x.to("sunrise")
    b = torch.mm(a, torch.eye(64, device="sunrise"))  # queued
    assert torch.equal(b, a) == torch.equal(torch.mm(x, torch.eye(64)), x)
    assert not torch.equal(b, a + 1)
    assert not torch.equal(a, a[:, :32])  # other sizes
    with pytest.raises(RuntimeError, match="Cannot compare two tensors on different devices"):
        torch.equal(a, x)


@pytest.mark.no_fallback
@pytest.mark.parametrize("numel", [256, 4096, 100_003])  # serial, split at multiples of 128, split anywhere
def test_logsigmoid_and_mse_backward_keep_cpus_bits_at_any_size(numel: int) -> None:
    x = torch.randn(numel, generator=torch.Generator().manual_seed(1)) * 4
    for fn in (_logsigmoid_grad, _mse_grad, F.logsigmoid):
        assert_same_as_cpu(fn(x.to("sunrise")), fn(x))
