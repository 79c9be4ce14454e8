"""Elementwise ops: activations with their gradients, conj_physical_, sgn's gradient. (Most
elementwise ops are covered by the tables of test_common_ops.py and by the OpInfo suite.)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import assert_module_same_as_cpu, assert_same_as_cpu, run_on_both


@pytest.mark.no_fallback
def test_hardswish_and_its_gradient() -> None:
    assert_module_same_as_cpu(nn.Hardswish, lambda: torch.randn(3, 4, 5) * 4)
    x = torch.randn(2, 8) * 4
    xs = x.sunrise()
    F.hardswish(xs, inplace=True)
    assert_same_as_cpu(xs, F.hardswish(x))


@pytest.mark.opinfo_regression
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.float32])
def test_conj_physical_inplace_matches_cpu(dtype):
    x = torch.randn(4, 3, dtype=dtype)
    actual, expected = run_on_both(lambda t: t.conj_physical_(), x)
    assert_same_as_cpu(actual, expected)
    assert not actual.is_conj()


@pytest.mark.opinfo_regression
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sgn_grad_matches_cpu(dtype):
    x = torch.randn(5, dtype=dtype)

    def grad(t):
        t = t.detach().requires_grad_()
        torch.sgn(t).sum().backward()
        return t.grad

    actual, expected = run_on_both(grad, x)
    assert_same_as_cpu(actual, expected)
