"""Device RNG: Philox kernels, distributions, reproducibility, generator state, dropout.

Random values cannot equal CPU's (different generators, as on CUDA), so each distribution is
compared with CPU's through its statistics, and every op is checked to run on the device (no CPU
fallback) and to repeat after re-seeding. The device generators are independent of the CPU's
(seeding, generator objects, RNG state, fork_rng, one generator per device); dropout's backward
applies the mask its forward drew.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import fallback_calls, no_fallback

N = 200_000


def _assert_native(*ops: str) -> None:
    for op in ops:
        assert fallback_calls(op) == 0, f"{op} fell back to the CPU: {torch_sunrise.fallback_stats()}"


def _moments(t: torch.Tensor) -> torch.Tensor:
    t = t.double().flatten()
    return torch.stack([t.mean(), t.std(), t.min(), t.max()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_uniform_matches_cpu_distribution(dtype: torch.dtype) -> None:
    dev = torch.empty(N, dtype=dtype, device="sunrise").uniform_(-2.0, 3.0).cpu()
    cpu = torch.empty(N, dtype=dtype).uniform_(-2.0, 3.0)
    assert dev.dtype == dtype
    assert dev.min() >= -2.0 and dev.max() < 3.0
    assert_close(_moments(dev), _moments(cpu), atol=0.05, rtol=0.02)
    _assert_native("aten::uniform_")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_normal_matches_cpu_distribution(dtype: torch.dtype) -> None:
    dev = torch.empty(N, dtype=dtype, device="sunrise").normal_(1.5, 2.0).cpu()
    cpu = torch.empty(N, dtype=dtype).normal_(1.5, 2.0)
    assert_close(_moments(dev)[:2], _moments(cpu)[:2], atol=0.03, rtol=0.02)
    # Tails: about 0.27% of a normal lies beyond 3 standard deviations.
    tail = ((dev.double() - 1.5).abs() > 6.0).double().mean()
    assert_close(tail, ((cpu.double() - 1.5).abs() > 6.0).double().mean(), atol=1.5e-3, rtol=0)
    _assert_native("aten::normal_")


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_uniform_and_normal_match_cpu_statistics(dtype: torch.dtype) -> None:
    u = torch.empty(N, dtype=dtype, device="sunrise").uniform_(-1.0, 3.0).cpu()
    n = torch.randn(N, dtype=dtype, device="sunrise").cpu()
    cu, cn = torch.empty(N, dtype=dtype).uniform_(-1.0, 3.0), torch.randn(N, dtype=dtype)
    for dev, cpu in ((u, cu), (n, cn)):
        assert_close(_moments(torch.view_as_real(dev)[:, 0])[:2], _moments(torch.view_as_real(cpu)[:, 0])[:2],
                     atol=0.03, rtol=0.02)
        assert_close(_moments(torch.view_as_real(dev)[:, 1])[:2], _moments(torch.view_as_real(cpu)[:, 1])[:2],
                     atol=0.03, rtol=0.02)


def test_factories_rand_randn_randint_run_on_device() -> None:
    a = torch.rand(3, 4, device="sunrise")
    b = torch.randn(3, 4, device="sunrise", dtype=torch.float64)
    c = torch.randint(5, 9, (1000,), device="sunrise")
    assert a.device.type == b.device.type == c.device.type == "sunrise"
    counts = torch.bincount(c.cpu(), minlength=9)[5:]
    assert counts.sum() == 1000 and (counts > 150).all()
    assert c.min() >= 5 and c.max() < 9
    _assert_native("aten::uniform_", "aten::normal_", "aten::random_")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.float32, torch.bfloat16])
def test_random_default_range_matches_cpu(dtype: torch.dtype) -> None:
    dev = torch.empty(20_000, dtype=dtype, device="sunrise").random_().cpu()
    cpu = torch.empty(20_000, dtype=dtype).random_()
    assert dev.min() >= 0
    # Both cover the same range: compare the maxima's order of magnitude.
    assert_close(dev.double().max().log2(), cpu.double().max().log2(), atol=0.2, rtol=0)
    assert torch.empty(2, dtype=dtype, device="sunrise").random_(0, 2).cpu().le(1).all()


def test_random_argument_errors_match_cpu() -> None:
    for make in (lambda d: torch.empty(3, device=d).random_(5, 2), lambda d: torch.empty(3, device=d).uniform_(2, 1),
                 lambda d: torch.empty(3, device=d).normal_(0, -1), lambda d: torch.empty(3, device=d).bernoulli_(1.5)):
        with pytest.raises(RuntimeError):
            make("cpu")
        with pytest.raises(RuntimeError):
            make("sunrise")


def test_bernoulli_scalar_and_tensor_probabilities() -> None:
    assert_close(torch.empty(N, device="sunrise").bernoulli_(0.3).mean().cpu(), torch.tensor(0.3), atol=0.01, rtol=0)
    p = torch.linspace(0, 1, 5).repeat(20_000)
    dev = torch.bernoulli(p.sunrise()).cpu()
    cpu = torch.bernoulli(p)
    assert_close(dev.view(-1, 5).mean(0), cpu.view(-1, 5).mean(0), atol=0.02, rtol=0)
    # p broadcast against a non-contiguous output.
    out = torch.empty(5, 4000, device="sunrise").t()
    out.bernoulli_(torch.linspace(0, 1, 5, device="sunrise"))
    assert_close(out.mean(0).cpu(), torch.linspace(0, 1, 5), atol=0.03, rtol=0)
    _assert_native("aten::bernoulli")


def test_multinomial_with_and_without_replacement() -> None:
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [1.0, 1.0, 0.0, 2.0]])
    dev = torch.multinomial(probs.sunrise(), 20_000, replacement=True).cpu()
    cpu = torch.multinomial(probs, 20_000, replacement=True)
    for row in range(2):
        assert_close(torch.bincount(dev[row], minlength=4) / 20_000.0, torch.bincount(cpu[row], minlength=4) / 20_000.0,
                     atol=0.02, rtol=0)
    picks = torch.multinomial(probs.sunrise(), 3).cpu()
    for row in range(2):
        assert len(set(picks[row].tolist())) == 3
        assert all(probs[row, k] > 0 for k in picks[row].tolist())
    assert torch.multinomial(torch.ones(5, device="sunrise"), 5).sort().values.cpu().tolist() == [0, 1, 2, 3, 4]
    _assert_native("aten::multinomial")


def test_randperm_is_a_permutation() -> None:
    for n in (0, 1, 7, 1000):
        p = torch.randperm(n, device="sunrise").cpu()
        assert p.dtype == torch.int64
        assert_close(p.sort().values, torch.arange(n))
    _assert_native("aten::randperm")


def test_manual_seed_reproduces_every_op() -> None:
    def draw() -> list[torch.Tensor]:
        return [
            torch.randn(1000, device="sunrise"),
            torch.rand(10, 10, device="sunrise"),
            torch.randint(0, 100, (50,), device="sunrise"),
            torch.bernoulli(torch.full((100,), 0.5, device="sunrise")),
            torch.multinomial(torch.ones(10, device="sunrise"), 5),
            torch.randperm(20, device="sunrise"),
            torch.nn.functional.dropout(torch.ones(100, device="sunrise"), 0.5),
        ]

    torch.manual_seed(1234)
    first = [t.cpu() for t in draw()]
    torch.manual_seed(1234)
    second = [t.cpu() for t in draw()]
    for a, b in zip(first, second):
        assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(4321)
    assert not torch.equal(draw()[0].cpu(), first[0])


def test_results_do_not_depend_on_block_scheduling() -> None:
    torch.sunrise.manual_seed(7)
    big = torch.randn(3 * 65536 + 5, device="sunrise").cpu()  # several blocks run concurrently
    torch.sunrise.manual_seed(7)
    again = torch.randn(3 * 65536 + 5, device="sunrise").cpu()
    assert_close(big, again, rtol=0, atol=0)


def test_generator_objects_and_state_round_trip() -> None:
    g = torch.Generator(device="sunrise")
    assert g.device == torch.device("sunrise", 0)
    g.manual_seed(99)
    a = torch.randn(8, device="sunrise", generator=g).cpu()
    state = g.get_state()
    b = torch.randn(8, device="sunrise", generator=g).cpu()
    g.set_state(state)
    assert_close(torch.randn(8, device="sunrise", generator=g).cpu(), b, rtol=0, atol=0)
    g.manual_seed(99)
    assert_close(torch.randn(8, device="sunrise", generator=g).cpu(), a, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="generator"):
        torch.randn(3, device="sunrise", generator=torch.Generator())  # a CPU generator


def test_device_rng_state_api() -> None:
    torch.sunrise.manual_seed_all(5)
    assert torch.sunrise.initial_seed() == 5
    states = torch.sunrise.get_rng_state_all()
    x = [torch.rand(4, device=f"sunrise:{i}").cpu() for i in range(torch.sunrise.device_count())]
    torch.sunrise.set_rng_state_all(states)
    y = [torch.rand(4, device=f"sunrise:{i}").cpu() for i in range(torch.sunrise.device_count())]
    for a, b in zip(x, y):
        assert_close(a, b, rtol=0, atol=0)
    assert len(torch.sunrise.default_generators) == torch.sunrise.device_count()
    torch.sunrise.seed()
    torch.sunrise.seed_all()
    assert torch.sunrise.initial_seed() != 5


def test_fork_rng_restores_the_device_stream() -> None:
    torch.sunrise.manual_seed(3)
    with torch.random.fork_rng(devices=[0], device_type="sunrise"):
        inside = torch.rand(4, device="sunrise").cpu()
    outside = torch.rand(4, device="sunrise").cpu()
    assert_close(inside, outside, rtol=0, atol=0)


def test_dropout_uses_the_device_generator() -> None:
    x = torch.ones(10_000, device="sunrise")
    torch.sunrise.manual_seed(11)
    a = torch.nn.functional.dropout(x, 0.25).cpu()
    torch.sunrise.manual_seed(11)
    b = torch.nn.functional.dropout(x, 0.25).cpu()
    assert_close(a, b, rtol=0, atol=0)
    assert_close((a == 0).double().mean(), torch.tensor(0.25, dtype=torch.float64), atol=0.02, rtol=0)
    assert_close(a.max(), torch.tensor(1 / 0.75))
    _assert_native("aten::native_dropout", "aten::bernoulli")


# ---------------------------------------------------- generators and seeding


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


# ---------------------------------------------------------- dropout backward


def test_dropout_backward_native_matches_its_mask() -> None:
    x = torch.randn(64, 32, device="sunrise", requires_grad=True)
    with no_fallback():
        y = torch.nn.functional.dropout(x, p=0.3, training=True)
        y.backward(torch.ones_like(y))
    kept = (y.detach() != 0).cpu()
    assert_close(x.grad.cpu(), kept.float() / 0.7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool])
def test_dropout_backward_dtypes_match_cpu(dtype) -> None:
    grad = torch.randint(0, 3, (4, 5)).to(dtype)
    mask = torch.rand(4, 5) > 0.3
    with no_fallback():
        got = torch.ops.aten.native_dropout_backward(grad.sunrise(), mask.sunrise(), 1.25)
    expected = torch.ops.aten.native_dropout_backward(grad, mask, 1.25)
    assert got.dtype == expected.dtype
    assert_close(got.cpu(), expected, rtol=0, atol=0)
