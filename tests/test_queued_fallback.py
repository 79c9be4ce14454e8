"""The fallback's queued path: an op without a sunrise kernel, whose Meta kernel sizes its
outputs, runs ATen's CPU kernel as device work on the current stream, without the host waiting.

Results, aliasing, in-place and out= semantics and errors are compared with the CPU's; what
still synchronizes is reported with its reason (tests/test_fallback.py covers that path)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import describe

D = "sunrise"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _queue_long_work(n: int = 768, steps: int = 6) -> torch.Tensor:
    """A chain of matrix products on the current stream: a few hundred ms of device work."""
    m = torch.randn(n, n, generator=_gen(1)).to(D) / n**0.5
    x = m
    for _ in range(steps):
        x = x @ m
    return x


@pytest.fixture(autouse=True)
def _silent(fallback_mode) -> None:
    fallback_mode("silent")


def test_tail_op_after_a_long_matmul_is_queued_and_sees_its_result() -> None:
    # The first call with these arguments' dtypes and shapes waits (errors at the call, and the
    # CPU kernel's output geometry checked).
    torch.fft.fft(_queue_long_work(steps=1))
    torch.sunrise.synchronize()
    torch_sunrise.reset_fallback_stats()

    x = _queue_long_work()
    spectrum = torch.fft.fft(x)
    still_busy = not torch.sunrise.current_stream().query()
    assert still_busy, "the fft call waited for the device"
    assert torch_sunrise.fallback_stats() == {}
    assert torch_sunrise.queued_fallback_stats() == {"aten::_fft_r2c": 1}
    # Bitwise the CPU's fft of the very matrix the device computed before it.
    assert torch.equal(spectrum.cpu(), torch.fft.fft(x.cpu()))


def test_queued_results_match_cpu_bitwise_with_strides() -> None:
    x = torch.randn(6, 9, generator=_gen())
    cases = {
        "histc": lambda t: torch.histc(t, bins=5),
        "kthvalue": lambda t: torch.kthvalue(t, 3, 1),
        "median.dim": lambda t: torch.median(t.t(), 0),
        "nansum": lambda t: torch.nansum(t, 0),
        "logit": lambda t: torch.logit(t.sigmoid(), eps=1e-6),
        "searchsorted": lambda t: torch.searchsorted(t.sort(1).values, t),
        "rfft2": lambda t: torch.fft.rfft2(t),
        "linalg.eig": lambda t: torch.linalg.eig(t[:5, :5]),
        # No Meta kernels: their CPU kernels' shapes are known on the host.
        "cummax": lambda t: torch.cummax(t, 1),
        "logcumsumexp": lambda t: torch.logcumsumexp(t.t(), 1),
    }
    for name, fn in cases.items():
        torch_sunrise.reset_fallback_stats()
        want, got = fn(x), fn(x.to(D))
        assert torch_sunrise.fallback_stats() == {}, (name, torch_sunrise.fallback_reasons())
        assert torch_sunrise.queued_fallback_stats(), name
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        for w, g in zip(want, got):
            assert g.device.type == D
            assert torch.equal(g.cpu(), w), name
            assert g.stride() == w.stride() and g.dtype == w.dtype, name


def test_output_shapes_follow_each_calls_arguments() -> None:
    # The Meta kernel's outcomes are remembered per operand geometry and argument values.
    x = torch.randn(40, generator=_gen())
    d = x.to(D)
    for bins in (5, 7, 5, 7):
        assert torch.equal(torch.histc(d, bins=bins).cpu(), torch.histc(x, bins=bins))
    for rows in (8, 4, 8):
        m = x[: rows * 5].view(rows, 5)
        got = torch.kthvalue(m.to(D), 2, 0)
        assert torch.equal(got.values.cpu(), torch.kthvalue(m, 2, 0).values)
        got = torch.kthvalue(m.to(D).t(), 2, 1)  # transposed operand: another geometry
        assert torch.equal(got.indices.cpu(), torch.kthvalue(m.t(), 2, 1).indices)
    assert torch_sunrise.fallback_stats() == {}


def test_in_place_on_a_view_writes_the_base() -> None:
    base = torch.zeros(5, 6)
    dev = base.to(D)
    index = torch.tensor([0, 2])
    base[:, ::2].index_fill_(1, index, 7.0)
    view = dev[:, ::2]
    returned = view.index_fill_(1, index.to(D), 7.0)
    assert returned is view
    assert torch_sunrise.queued_fallback_stats() == {"aten::index_fill_.int_Scalar": 1}
    assert torch.equal(dev.cpu(), base)


def test_out_arguments_are_resized_and_returned_as_on_cpu() -> None:
    x = torch.randn(4, 7, generator=_gen())
    values_cpu, indices_cpu = torch.empty(0), torch.empty(0, dtype=torch.long)
    values_dev, indices_dev = values_cpu.to(D), indices_cpu.to(D)
    torch.kthvalue(x, 2, 1, out=(values_cpu, indices_cpu))
    result = torch.kthvalue(x.to(D), 2, 1, out=(values_dev, indices_dev))
    assert torch_sunrise.queued_fallback_stats() == {"aten::kthvalue.values": 1}
    assert result.values is values_dev and result.indices is indices_dev
    assert torch.equal(values_dev.cpu(), values_cpu) and torch.equal(indices_dev.cpu(), indices_cpu)
    assert values_dev.shape == (4,) and values_dev.stride() == values_cpu.stride()

    # A factory's out= (linspace's), grown past its storage.
    out = torch.empty(0, device=D)
    assert torch.linspace(0, 1, 33, out=out) is out
    assert torch.equal(out.cpu(), torch.linspace(0, 1, 33))

    # An out= tensor with elements of another shape: resized with the CPU's own warning (that
    # resizing is deprecated), which the synchronous path gives word for word.
    values_cpu, indices_cpu = torch.empty(2), torch.empty(2, dtype=torch.long)
    values_dev, indices_dev = values_cpu.to(D), indices_cpu.to(D)
    with warnings.catch_warnings(record=True) as cpu_warnings:
        warnings.simplefilter("always")
        torch.kthvalue(x, 2, 1, out=(values_cpu, indices_cpu))
    with warnings.catch_warnings(record=True) as dev_warnings:
        warnings.simplefilter("always")
        torch.kthvalue(x.to(D), 2, 1, out=(values_dev, indices_dev))
    assert torch.equal(values_dev.cpu(), values_cpu) and torch.equal(indices_dev.cpu(), indices_cpu)
    resized = [str(w.message) for w in cpu_warnings if "resized" in str(w.message)]
    assert resized and [str(w.message) for w in dev_warnings if "resized" in str(w.message)] == resized
    assert "out= tensor with elements" in torch_sunrise.fallback_reasons()["aten::kthvalue.values"]


def test_cpu_operands_are_copied_at_the_call() -> None:
    x = torch.randn(64, generator=_gen())
    scalar = torch.tensor(0.25)  # a 0-dim CPU tensor: CUDA takes it too
    magnitudes = x.to(D).abs()
    torch.polar(magnitudes, scalar)  # the first call waits
    long_work = _queue_long_work()
    got = torch.polar(magnitudes, scalar)
    scalar.fill_(100.0)  # reused by the caller while the queued call is pending
    assert not torch.sunrise.current_stream().query()
    assert torch_sunrise.queued_fallback_stats() == {"aten::polar.out": 2}
    want = torch.polar(x.abs(), torch.tensor(0.25))
    assert torch.equal(got.cpu(), want)
    del long_work


def test_dtype_errors_arrive_at_the_call_and_the_device_keeps_working() -> None:
    with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
        torch.kthvalue(torch.ones(5, dtype=torch.bool, device=D), 2)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        torch.histc(torch.arange(10, device=D), bins=3)
    torch.sunrise.synchronize()  # no sticky error left behind
    x = torch.randn(10, generator=_gen())
    assert torch.equal(torch.histc(x.to(D), bins=3).cpu(), torch.histc(x, bins=3))


def test_argument_errors_arrive_at_the_call_with_cpus_class() -> None:
    # The Meta kernel refuses: the synchronous path runs and raises the CPU's error.
    x = torch.randn(3, 4)
    with pytest.raises(IndexError) as cpu:
        torch.kthvalue(x, 2, 5)
    with pytest.raises(IndexError) as dev:
        torch.kthvalue(x.to(D), 2, 5)
    assert str(dev.value).splitlines()[0] == str(cpu.value).splitlines()[0]
    torch.sunrise.synchronize()


def test_random_tail_op_draws_from_the_sunrise_generator_in_stream_order() -> None:
    rates = (torch.rand(1000, generator=_gen()) * 4).to(D)
    torch.sunrise.manual_seed(123)
    first = torch.poisson(rates)
    second = torch.poisson(rates)
    torch.sunrise.manual_seed(123)
    again = torch.poisson(rates)
    assert torch_sunrise.fallback_stats() == {}
    assert torch_sunrise.queued_fallback_stats() == {"aten::poisson": 3}
    assert torch.equal(first.cpu(), again.cpu())
    assert not torch.equal(first.cpu(), second.cpu())
    # An explicit generator is used, and advanced, instead of the default one.
    g = torch.Generator(device=D).manual_seed(7)
    a = torch.poisson(rates, generator=g)
    b = torch.poisson(rates, generator=torch.Generator(device=D).manual_seed(7))
    assert torch.equal(a.cpu(), b.cpu())


def test_queued_op_on_a_side_stream_follows_that_stream() -> None:
    src = torch.randn(1 << 16, generator=_gen())
    x = torch.zeros(1 << 16, device=D)
    s = torch.Stream(device=D)
    s.wait_stream(torch.sunrise.current_stream())
    with torch.sunrise.stream(s):
        x.copy_(src.to(D))
        h = torch.histc(x, bins=11)  # queued on s, after the copy
    torch.sunrise.current_stream().wait_stream(s)
    assert torch.equal(h.cpu(), torch.histc(src, bins=11))


def test_data_dependent_and_meta_less_ops_synchronize_with_reasons() -> None:
    x = torch.tensor([0, 2, 2, 5, 5, 5])
    d = x.to(D)
    assert torch.equal(torch.unique_consecutive(d).cpu(), torch.unique_consecutive(x))
    assert torch.equal(torch.repeat_interleave(d).cpu(), torch.repeat_interleave(x))
    reasons = torch_sunrise.fallback_reasons()
    assert "no Meta kernel" in reasons["aten::unique_consecutive"], reasons
    assert "Meta kernel raised" in reasons["aten::repeat_interleave.Tensor"], reasons
    assert torch_sunrise.queued_fallback_stats() == {}


def test_other_libraries_ops_synchronize_and_keep_view_semantics() -> None:
    # Their CPU kernels may be Python (which would need the GIL on the device thread): the
    # synchronous path, where a returned view aliases the device tensor as on the CPU.
    lib = torch.library.Library("sunrise_queued_test", "DEF")
    lib.define("first_row(Tensor(a) x) -> Tensor(a)")
    lib.impl("first_row", lambda x: x[0], "CPU")
    lib.impl("first_row", lambda x: x[0], "Meta")
    x = torch.arange(6.0).view(2, 3)
    d = x.to(D)
    row = torch.ops.sunrise_queued_test.first_row(d)
    assert row.device.type == D and torch.equal(row.cpu(), x[0])
    row.fill_(9.0)  # a view: writes the base
    assert torch.equal(d.cpu()[0], torch.full((3,), 9.0))
    reasons = torch_sunrise.fallback_reasons()
    assert set(reasons) == {"sunrise_queued_test::first_row"}, reasons
    assert "not an ATen operator" in reasons["sunrise_queued_test::first_row"]


def test_fallback_report_tells_native_queued_and_synchronous_apart(tmp_path, run_python) -> None:
    script = tmp_path / "work.py"
    script.write_text(
        "import torch\n"
        "x = torch.arange(12.0, device='sunrise')\n"
        "y = (x * 2).sum()\n"  # native
        "h = torch.histc(x, bins=4)\n"  # queued
        "c = torch.bincount(x.long())\n"  # synchronous
        "print(y.item(), h.tolist(), c.tolist())\n"
    )
    proc = run_python(f"import sys; from torch_sunrise.tools.fallback_report import main; "
                      f"sys.exit(main([{str(script)!r}]))")
    assert proc.returncode == 0, describe(proc)
    report = proc.stderr[proc.stderr.index("== sunrise CPU fallback report =="):]
    queued_part, sync_part = report.split("synchronous (", 1)
    assert "queued as device work" in queued_part and "aten::histc" in queued_part, report
    assert "aten::histc" not in sync_part, report
    bincount = [line for line in sync_part.splitlines() if "aten::bincount" in line]
    assert len(bincount) == 1 and "no Meta kernel" in bincount[0], report
    assert "aten::mul" not in report and "aten::sum" not in report, report
