"""Compare-with-CPU debug mode (torch_sunrise/debug.py, docs/debugging.md): every op run on
sunrise is re-run on CPU copies of its inputs and compared, forward and backward.

A correct model stays silent; wrong kernels, registered for the device only inside a test
(``wrong_kernel``), are caught with the op, the shapes, the differences and the caller's line;
random ops are compared through sunrise's own random numbers (dropout) or skipped with a reason;
in-place and ``out=`` results are compared; ``SUNRISE_COMPARE_CPU`` enables the mode for a
whole process; and without the mode the same wrong kernel goes unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any, Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _get_current_dispatch_mode

import torch_sunrise.debug
from conftest import assert_same_as_cpu, describe
from torch_sunrise.debug import SunriseCompareError, SunriseCompareWarning, compare_with_cpu

pytestmark = pytest.mark.skipif(
    os.environ.get("SUNRISE_COMPARE_CPU", "0").strip() not in ("", "0"),
    reason="these tests turn the mode on and off themselves, with deliberately wrong kernels",
)


@contextlib.contextmanager
def wrong_kernel(op: str, kernel: Callable[..., Any]) -> Iterator[None]:
    """Registers ``kernel`` as sunrise's ``aten::<op>`` for the block; the dispatcher goes back to
    the real kernel when the registration is destroyed."""
    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding a previously registered kernel"
            lib.impl(op, kernel, "PrivateUse1")
        yield
    finally:
        lib._destroy()


def corrupt(t: torch.Tensor, by: float = 1.0, index: int = 3) -> torch.Tensor:
    t.view(-1)[index] += by
    return t


def bad_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """CPU's sigmoid, one element off by one."""
    return corrupt(torch.sigmoid(x.cpu())).to(x.device)


def line_after() -> int:
    """The line number after the caller's line."""
    return sys._getframe(1).f_lineno + 1


# ------------------------------------------------------- a correct model


def test_correct_model_forward_backward_and_step_are_silent() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.GELU(),
        torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5),
    ).to("sunrise")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, target = torch.randn(8, 16).to("sunrise"), torch.randint(0, 5, (8,)).to("sunrise")
    with warnings.catch_warnings(record=True) as caught, compare_with_cpu() as cmp:
        warnings.simplefilter("always")
        for _ in range(2):
            logits = model(x)
            loss = F.cross_entropy(logits, target) + logits.softmax(-1).square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    assert [str(w.message) for w in caught if issubclass(w.category, SunriseCompareWarning)] == []
    ops = cmp.ops
    assert cmp.mismatch_count == 0, cmp.summary()
    assert sum(s.compared for s in ops.values()) >= 100, cmp.summary()
    # Ops only the backward runs, on autograd's device thread: the mode reaches it.
    for backward_op in ("aten::gelu_backward.default", "aten::threshold_backward.default",
                        "aten::native_layer_norm_backward.default", "aten::_softmax_backward_data.default"):
        assert ops[backward_op].compared == 2, cmp.summary()
    assert ops["aten::addmm.default"].compared == 6
    summary = cmp.summary()
    assert "aten::gelu_backward.default" in summary and " 0 mismatches" in summary, summary
    assert _get_current_dispatch_mode() is None


# ------------------------------------------------------- wrong kernels


def test_wrong_kernel_raises_naming_op_shapes_differences_and_caller() -> None:
    x = torch.randn(4, 5, device="sunrise")
    expected_diff = float((bad_sigmoid(x).cpu() - torch.sigmoid(x.cpu())).abs().max())
    with wrong_kernel("sigmoid", bad_sigmoid):
        with compare_with_cpu() as cmp, pytest.raises(SunriseCompareError) as info:
            line = line_after()
            torch.sigmoid(x)
    message = str(info.value)
    assert message.startswith("aten::sigmoid.default: sunrise differs from the CPU in output 0"), message
    assert "self=float32[4, 5] (sunrise:0)" in message, message
    assert "1 of 20 elements differ beyond the tolerance (rtol=1.3e-06, atol=1e-05)" in message, message
    assert f"max abs diff {expected_diff:.3g}; worst element at index (0, 3)" in message, message
    assert f'File "{__file__}", line {line}, in test_wrong_kernel' in message, message
    assert "torch.sigmoid(x)" in message
    assert info.value.mismatch.max_abs_diff == pytest.approx(expected_diff)
    assert cmp.mismatch_count == 1 and cmp.ops["aten::sigmoid.default"].mismatches == 1
    # The real kernel is back.
    assert_same_as_cpu(torch.sigmoid(x), torch.sigmoid(x.cpu()))


def test_wrong_kernel_warns_once_per_call_site_and_counts_every_mismatch() -> None:
    x = torch.randn(4, 5, device="sunrise")
    with wrong_kernel("sigmoid", bad_sigmoid), compare_with_cpu(on_mismatch="warn") as cmp:
        with pytest.warns(SunriseCompareWarning) as caught:
            first_line = line_after()
            results = [torch.sigmoid(x) for _ in range(3)]
            second_line = line_after()
            torch.sigmoid(x)
    ours = [w for w in caught if issubclass(w.category, SunriseCompareWarning)]
    assert [(w.filename, w.lineno) for w in ours] == [(__file__, first_line), (__file__, second_line)]
    assert "aten::sigmoid.default" in str(ours[0].message)
    assert cmp.ops["aten::sigmoid.default"].mismatches == 4 and cmp.mismatch_count == 4
    assert len(cmp.mismatches) == 4
    assert cmp.summary().splitlines()[3].startswith("aten::sigmoid.default"), cmp.summary()
    # The mode warns and returns sunrise's (wrong) result.
    assert_same_as_cpu(results[0], bad_sigmoid(x).cpu(), device="sunrise")


def test_wrong_backward_kernel_is_caught_in_backward() -> None:
    def bad_gelu_backward(grad: torch.Tensor, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
        right = torch.ops.aten.gelu_backward(grad.cpu(), x.cpu(), approximate=approximate)
        return corrupt(right, by=0.5).to(grad.device)

    x = torch.randn(4, 5, device="sunrise", requires_grad=True)
    with wrong_kernel("gelu_backward", bad_gelu_backward), compare_with_cpu() as cmp:
        y = F.gelu(x * 2).sum()  # the forward is right
        with pytest.raises(SunriseCompareError) as info:
            line = line_after()
            y.backward()
    message = str(info.value)
    assert message.startswith("aten::gelu_backward.default: sunrise differs from the CPU in output 0"), message
    assert "in the backward of GeluBackward0" in message, message
    assert f'File "{__file__}", line {line}' in message, message
    assert cmp.ops["aten::gelu.default"].mismatches == 0
    assert cmp.ops["aten::gelu_backward.default"].mismatches == 1


def test_tolerances_default_explicit_and_bitwise() -> None:
    def slightly_off_sigmoid(x: torch.Tensor) -> torch.Tensor:
        right = torch.sigmoid(x.cpu())
        right.view(-1)[3] = torch.nextafter(right.view(-1)[3], torch.tensor(2.0))  # one ulp
        return right.to(x.device)

    x = torch.randn(4, 5, device="sunrise")
    with wrong_kernel("sigmoid", slightly_off_sigmoid):
        with compare_with_cpu() as default:
            torch.sigmoid(x)
        with compare_with_cpu(rtol=0, atol=0) as bitwise, pytest.raises(SunriseCompareError, match="bitwise"):
            torch.sigmoid(x)
    stats = default.ops["aten::sigmoid.default"]
    assert (stats.compared, stats.bitwise_equal, stats.mismatches) == (1, 0, 0)
    assert 0 < stats.max_abs_diff < 1e-6
    assert bitwise.mismatch_count == 1
    with pytest.raises(ValueError, match="both rtol and atol"):
        with compare_with_cpu(rtol=1e-3):
            pass
    with pytest.raises(ValueError, match="on_mismatch"):
        with compare_with_cpu(on_mismatch="ignore"):  # type: ignore[arg-type]
            pass


# ------------------------------------------------------- random ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_is_compared_through_sunrise_mask(dtype: torch.dtype) -> None:
    x = torch.randn(64, 64, device="sunrise", dtype=dtype, requires_grad=True)
    with compare_with_cpu(rtol=0, atol=0) as cmp:  # bitwise: the CPU's formula, sunrise's mask
        F.dropout(x, 0.1, training=True).sum().backward()
        torch.randn(8, device="sunrise")
    ops = cmp.ops
    assert (ops["aten::native_dropout.default"].compared, ops["aten::native_dropout.default"].bitwise_equal) == (1, 1)
    assert ops["aten::native_dropout_backward.default"].compared == 1
    randn = ops["aten::randn.default"]
    assert (randn.calls, randn.skipped, randn.compared) == (1, 1, 0)
    assert any("random op" in reason for reason in randn.skip_reasons), randn.skip_reasons
    assert "aten::randn.default (1 call): random op" in cmp.summary()


def test_wrong_dropout_kernel_is_caught() -> None:
    def bad_dropout(x: torch.Tensor, p: float, train: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.rand(x.shape) >= p
        out = corrupt(x.cpu() * mask / (1 - p), index=0)
        return out.to(x.device), mask.to(x.device)

    x = torch.randn(64, device="sunrise")
    with wrong_kernel("native_dropout", bad_dropout), compare_with_cpu() as cmp:
        with pytest.raises(SunriseCompareError, match="through sunrise's mask"):
            F.dropout(x, 0.5, training=True)
    assert cmp.mismatch_count == 1


# ------------------------------------------------------- in-place and out=


def test_wrong_in_place_result_is_caught() -> None:
    def bad_add_(self: torch.Tensor, other: torch.Tensor, alpha: float = 1) -> torch.Tensor:
        return self.copy_(corrupt(torch.add(self.cpu(), other.cpu(), alpha=alpha), by=0.25))

    a, b = torch.randn(4, 5, device="sunrise"), torch.randn(4, 5, device="sunrise")
    with wrong_kernel("add_.Tensor", bad_add_), compare_with_cpu() as cmp:
        with pytest.raises(SunriseCompareError) as info:
            a += b
    message = str(info.value)
    assert message.startswith("aten::add_.Tensor: sunrise differs from the CPU in argument 'self' "
                              "(written in place)"), message
    assert cmp.mismatch_count == 1


def test_correct_in_place_and_out_ops_pass_bitwise() -> None:
    base = torch.randn(6, 8)
    a = base.to("sunrise")
    with compare_with_cpu(rtol=0, atol=0) as cmp:
        a.mul_(2).add_(a)                                       # in place, aliasing self
        torch.add(a[:, 2:4], a[:, 4:6], out=a[:, 0:2])           # out= a view of the inputs' storage
        out = torch.empty(0, device="sunrise")
        torch.mul(a, 3, out=out)                                 # out= resized
        torch._foreach_mul_([a[0], a[1]], 0.5)                   # a list written in place
        a.index_put_((torch.tensor([0, 2], device="sunrise"),), torch.ones(8, device="sunrise"), accumulate=True)
        view = a[1:, 1:]
        view.as_strided((3, 2), (1, 8), 2)                       # addresses the whole storage
        square = a[:4, :4]
        square.add_(square.t())                                  # reads what it writes: aliasing kept
        a.t_()                                                   # metadata written in place
        torch.cumsum(a, 0, out=a)
    ops = cmp.ops
    assert cmp.mismatch_count == 0, cmp.summary()
    for op in ("aten::mul_.Tensor", "aten::add_.Tensor", "aten::add.out", "aten::mul.out",
               "aten::_foreach_mul_.Scalar", "aten::index_put_.default", "aten::as_strided.default",
               "aten::t_.default", "aten::cumsum.out"):
        assert ops[op].compared >= 1 and ops[op].skipped == 0, (op, cmp.summary())
    # The same sequence on the CPU gives the same result: the mode left the program alone.
    c = base.clone()
    c.mul_(2).add_(c)
    torch.add(c[:, 2:4], c[:, 4:6], out=c[:, 0:2])
    torch._foreach_mul_([c[0], c[1]], 0.5)
    c.index_put_((torch.tensor([0, 2]),), torch.ones(8), accumulate=True)
    c[:4, :4].add_(c[:4, :4].t())
    c.t_()
    torch.cumsum(c, 0, out=c)
    assert_same_as_cpu(a, c)


def test_uninitialized_memory_is_skipped_with_a_reason() -> None:
    with compare_with_cpu() as cmp:
        e = torch.empty(3, 4, device="sunrise")
        torch.empty_like(e).fill_(1)
    assert cmp.ops["aten::empty.memory_format"].skip_reasons == {"its result is uninitialized memory": 1}
    assert cmp.ops["aten::fill_.Scalar"].compared == 1


# ------------------------------------------------------- SUNRISE_COMPARE_CPU


SCRIPT = """
import torch
{setup}
x = torch.randn(4, 5, device="sunrise", requires_grad=True)
y = (torch.sigmoid(x) * 2).sum()
y.backward()
print("done", y.item())
"""

BAD_SIGMOID = """
import warnings
def bad_sigmoid(x):
    out = torch.sigmoid(x.cpu())
    out.view(-1)[3] += 1
    return out.to(x.device)
lib = torch.library.Library("aten", "IMPL")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    lib.impl("sigmoid", bad_sigmoid, "PrivateUse1")
"""


def test_env_var_prints_the_summary_at_exit(run_python) -> None:
    proc = run_python(SCRIPT.format(setup=""), env={"SUNRISE_COMPARE_CPU": "1"})
    assert proc.returncode == 0, describe(proc)
    assert "done" in proc.stdout, describe(proc)
    summary = proc.stderr[proc.stderr.index("== sunrise compare-with-CPU summary =="):]
    assert " 0 mismatches" in summary, describe(proc)
    assert "aten::sigmoid.default" in summary and "aten::sigmoid_backward.default" in summary, describe(proc)
    assert "aten::randn.default (1 call): random op" in summary, describe(proc)


def test_env_var_with_a_wrong_kernel_exits_non_zero_naming_the_op(run_python) -> None:
    code = SCRIPT.format(setup=BAD_SIGMOID)
    line = 1 + next(i for i, text in enumerate(code.splitlines()) if "torch.sigmoid(x)" in text)
    proc = run_python(code, env={"SUNRISE_COMPARE_CPU": "1"})
    assert proc.returncode != 0, describe(proc)
    assert "done" not in proc.stdout, describe(proc)
    assert "SunriseCompareError: aten::sigmoid.default: sunrise differs from the CPU" in proc.stderr, describe(proc)
    assert f'File "<string>", line {line}, in <module>' in proc.stderr, describe(proc)
    assert " 1 mismatches" in proc.stderr, describe(proc)

    warned = run_python(code, env={"SUNRISE_COMPARE_CPU": "warn"})
    assert warned.returncode == 0 and "done" in warned.stdout, describe(warned)
    assert "SunriseCompareWarning: aten::sigmoid.default" in warned.stderr, describe(warned)
    assert " 1 mismatches" in warned.stderr, describe(warned)


# ------------------------------------------------------- mode off


def test_without_the_mode_nothing_is_intercepted(run_python) -> None:
    x = torch.randn(4, 5, device="sunrise")
    with wrong_kernel("sigmoid", bad_sigmoid):
        wrong = torch.sigmoid(x)  # no error: nothing compares
    assert not torch.equal(wrong.cpu(), torch.sigmoid(x.cpu()))
    assert _get_current_dispatch_mode() is None
    assert torch_sunrise.debug.env_report() is None
    # Without SUNRISE_COMPARE_CPU, importing torch_sunrise does not even import the debug module.
    proc = run_python("import sys, torch, torch_sunrise; print(sorted(m for m in sys.modules if 'debug' in m "
                      "and m.startswith('torch_sunrise')))")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", describe(proc)
