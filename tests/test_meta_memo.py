"""The host's memo of TensorIterator meta() outcomes (MetaMemo, csrc/aten/StructuredOps.h).

A second call of an op with operands of the same dtypes, geometries and flags,
the same other arguments and the same default dtype reuses the output geometry
and dtype of the first call's meta(). Each test first primes the memo with one
call, then changes exactly one thing a memo key must hold, and compares the
second call's result (values, dtype, sizes, strides) with CPU eager.
"""

from __future__ import annotations

import threading

import pytest
import torch

import torch_sunrise  # noqa: F401
from conftest import assert_same_as_cpu, run_on_both


@pytest.mark.parametrize(
    "first, second",
    [
        # dtype of an operand
        ((torch.arange(6, dtype=torch.int64),), (torch.arange(6, dtype=torch.int32),)),
        ((torch.arange(6, dtype=torch.int64),), (torch.arange(6.0),)),
        # sizes, then strides with the same sizes (a transposed operand)
        ((torch.randn(4, 6),), (torch.randn(6, 4),)),
        ((torch.randn(5, 5),), (torch.randn(5, 5).t(),)),
        # a broadcast operand
        ((torch.randn(4, 6),), (torch.randn(4, 1),)),
    ],
)
def test_second_call_with_other_operands(first, second):
    fn = lambda x: torch.add(x, torch.ones((), dtype=x.dtype).to(x.device), alpha=2)  # noqa: E731
    for args in (first, second):
        assert_same_as_cpu(*run_on_both(fn, *args))


def test_transposed_operands_keep_their_layout():
    a = torch.randn(5, 7)
    for x in (a, a.t().contiguous().t(), a):  # same sizes, other strides, then back
        result, expected = run_on_both(lambda t: t * t + 1, x)
        assert_same_as_cpu(result, expected)


def test_python_scalars_of_another_kind():
    x = torch.arange(8)
    for scalar in (2, 2.5, True, 3):
        assert_same_as_cpu(*run_on_both(lambda t: t * scalar, x))
        assert_same_as_cpu(*run_on_both(lambda t: t + scalar, x))


def test_default_dtype_is_part_of_the_key():
    x = torch.arange(6, dtype=torch.int64)
    assert_same_as_cpu(*run_on_both(torch.sin, x))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result, expected = run_on_both(torch.sin, x)
        assert expected.dtype == torch.float64
        assert_same_as_cpu(result, expected)
    finally:
        torch.set_default_dtype(previous)
    assert_same_as_cpu(*run_on_both(torch.sin, x))


def test_argument_checks_still_raise_on_the_host():
    x = torch.arange(6, device="sunrise")
    torch.add(x, x, alpha=2)  # primes the memo with an integral alpha
    with pytest.raises(RuntimeError, match="alpha must not be a floating point"):
        torch.add(x, x, alpha=1.5)
    torch.sunrise.synchronize()


def test_string_arguments():
    x = torch.randn(64)
    for approximate in ("none", "tanh", "none"):
        assert_same_as_cpu(*run_on_both(lambda t: torch.nn.functional.gelu(t, approximate=approximate), x))


def test_scalar_arguments():
    x = torch.randn(64)
    for beta, threshold in ((1.0, 20.0), (2.0, 20.0), (2.0, 0.5)):
        assert_same_as_cpu(*run_on_both(lambda t: torch.nn.functional.softplus(t, beta, threshold), x))


def test_conjugate_and_negative_views():
    z = torch.randn(8, dtype=torch.complex64)
    for x in (z, z.conj(), torch._neg_view(z), z):
        assert_same_as_cpu(*run_on_both(lambda t: t * 2 + 1, x))


def test_more_shapes_than_entries():
    shapes = [(3,), (4, 2), (2, 2, 2), (5,), (1, 7), (3,), (4, 2)]
    for shape in shapes * 2:
        a, b = torch.randn(shape), torch.randn(shape)
        assert_same_as_cpu(*run_on_both(torch.mul, a, b))


def test_concurrent_host_threads():
    shapes = [(16,), (4, 4), (2, 8), (16, 1)]
    errors: list[BaseException] = []

    def work(shape, dtype):
        try:
            a = torch.arange(16, dtype=dtype).reshape(shape)
            for _ in range(200):
                assert_same_as_cpu(*run_on_both(lambda t: t + t, a))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s, d)) for s in shapes for d in (torch.float32, torch.int64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
