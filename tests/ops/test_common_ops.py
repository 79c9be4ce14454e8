"""Tables of everyday ops across families, each compared with the same call on the CPU: math,
sorting, indexing, shape ops and reductions on sunrise:0 and sunrise:1 (whichever kernel runs,
the CPU fallback included); ops that used to take the fallback and are now native (the fallback
forbidden) with their argument errors; common nn layers.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import torch_sunrise
from conftest import assert_same_as_cpu


def to_dev(x, device="sunrise"):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, (list, tuple)):
        return type(x)(to_dev(v, device) for v in x)
    return x


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
    assert_same_as_cpu(actual, expected, device="sunrise:0")


@pytest.mark.two_devices
@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=i) for i, f, a in OPS[:12]])
def test_op_on_device_1_matches_cpu(fn, args) -> None:
    expected = fn(*args)
    actual = fn(*to_dev(args, "sunrise:1"))
    assert_same_as_cpu(actual, expected, device="sunrise:1")
    assert torch.sunrise.current_device() == 0


# ------------------------------------------------ ops that used to fall back


_X, _Y = torch.randn(4, 6), torch.randn(4, 6)
_C = torch.randn(3, 4, dtype=torch.complex64)

CASES = {
    "rsub scalar": lambda x, y, c: 1 - x,
    "rsub tensor": lambda x, y, c: torch.rsub(x, y, alpha=2),
    "relu6": lambda x, y, c: F.relu6(x),
    "hardtanh": lambda x, y, c: F.hardtanh(x, -0.5, 0.5),
    "hardtanh_": lambda x, y, c: F.hardtanh(x.clone(), -0.25, 0.75, inplace=True),
    "view_as_real": lambda x, y, c: torch.view_as_real(c),
    "view_as_complex": lambda x, y, c: torch.view_as_complex(torch.view_as_real(c).clone()),
    "unfold": lambda x, y, c: x.unfold(1, 2, 2),
    "repeat": lambda x, y, c: x.repeat(2, 3),
    "logical_not": lambda x, y, c: torch.logical_not(x > 0),
    "logical_not_": lambda x, y, c: (x > 0).logical_not_(),
    "logical_and": lambda x, y, c: (x > 0).logical_and(y > 0),
    "logical_or broadcast": lambda x, y, c: torch.logical_or(x, y[0]),
    "logical_xor float": lambda x, y, c: torch.logical_xor(x, y),
    "logical_and out float": lambda x, y, c: torch.logical_and(x, y, out=torch.empty(0, device=x.device)),
    "dot": lambda x, y, c: torch.dot(x[0], y[0]),
    "vdot complex": lambda x, y, c: torch.vdot(c[0], c[1]),
    "flip": lambda x, y, c: torch.flip(x, [0, -1]),
    "flip transposed": lambda x, y, c: torch.flip(x.t(), [1]),
    "roll one dim": lambda x, y, c: torch.roll(x.t(), 1, 0),
    "roll two dims": lambda x, y, c: torch.roll(x.t(), (1, 2), (0, 1)),
    "roll flat": lambda x, y, c: torch.roll(x.t(), 2),
}


@pytest.mark.no_fallback
@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_cpu_natively(name: str) -> None:
    fn = CASES[name]
    assert_same_as_cpu(fn(_X.sunrise(), _Y.sunrise(), _C.sunrise()), fn(_X, _Y, _C))
    assert torch_sunrise.fallback_stats() == {}


@pytest.mark.no_fallback
def test_argument_errors_raise_at_the_call() -> None:
    xs = _X.sunrise()
    with pytest.raises(RuntimeError, match="1D tensors expected"):
        torch.dot(xs, xs)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.dot(xs[0], xs[0].double())
    with pytest.raises(RuntimeError, match="appears multiple times"):
        torch.flip(xs, [0, 0])
    with pytest.raises(RuntimeError, match="must align"):
        torch.roll(xs, (1, 2), (0,))
    with pytest.raises(IndexError, match="out of range"):
        torch.roll(xs, 1, 5)
    with pytest.raises(RuntimeError, match=r"output with shape \[4, 1\] doesn't match the broadcast shape \[4, 6\]"):
        xs[:, :1].logical_and_(xs)


# ----------------------------------------------------------------- nn layers


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
    assert_same_as_cpu(md(x.sunrise()), m(x))
