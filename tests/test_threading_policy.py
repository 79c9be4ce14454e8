"""The device's threading policy (README, "Threads"): work below SUNRISE_SERIAL_US
of estimated one-core time runs on the device thread alone, larger work with
the team CPU eager uses. The choice must never change a result's bits, so every
case here runs in fresh processes with everything serial-eligible on the device
thread (a huge threshold), with the team for everything (0), and with the
default, and each must equal CPU eager bitwise."""

from __future__ import annotations

import pytest

from conftest import describe

# Shapes straddle the default threshold (100 µs) and ATen's grain size:
# elementwise and row-wise ops from a few KB to a few MB (with one thread and
# with two, silu and softmax's backward differ in the last bit), layer norm,
# fused AdamW, matrix-vector and small matrix products (among them the shapes
# where MKL's two threads round differently from one), and attention shaped
# like token-by-token decoding and like a short prefill.
_CASES = r"""
import torch, torch.nn.functional as F
torch.manual_seed(0)
results = []
def case(fn, *tensors, bitwise=True):
    cpu = fn(*tensors)
    dev = fn(*(t.to("sunrise") for t in tensors)).cpu()
    same = torch.equal(dev, cpu) if bitwise else torch.allclose(dev, cpu, rtol=1e-5, atol=1e-6)
    results.append(same and dev.dtype == cpu.dtype)
for n in (1000, 76_800, 100_000, 1_000_000):  # 76,800: each half a multiple of 128
    for dtype in (torch.float32, torch.bfloat16):
        x, y = torch.randn(n, dtype=dtype), torch.randn(n, dtype=dtype)
        case(lambda a, b: a * b + a, x, y)
        case(lambda a: F.silu(a).float(), x)
        case(lambda a: torch.softmax(a.view(-1, 100), -1), x)
        case(lambda a: torch.log_softmax(a.view(-1, 100).float(), -1), x)
        case(lambda a: torch.softmax(a.view(100, -1), 0), x)
        case(lambda a, g: torch._softmax_backward_data(g.view(-1, 100), torch.softmax(a.view(-1, 100), -1), -1,
                                                       a.dtype), x, y)
for dtype in (torch.float32, torch.bfloat16):
    for shape in ((2, 1, 64), (64, 768), (1000, 100), (5, 4097)):
        x, w, b = torch.randn(shape, dtype=dtype), torch.randn(shape[-1]), torch.randn(shape[-1])
        case(lambda x, w, b: torch.cat([t.flatten() for t in torch.native_layer_norm(x, [shape[-1]], w, b, 1e-5)]),
             x, w.to(dtype), b.to(dtype))
        case(lambda x, w, b: torch.native_layer_norm(x, [shape[-1]], w, b, 1e-5)[0], x, w, b)
    for sizes in ((64, 2048, 4), (300_000, 33)):
        def adamw(*tensors):
            params, grads = [t.clone() for t in tensors[:len(sizes)]], list(tensors[len(sizes):])
            state = [[torch.zeros_like(p) for p in params] for _ in range(2)]
            steps = [torch.tensor(1.0, device=p.device) for p in params]
            for _ in range(2):
                torch._fused_adamw_(params, grads, state[0], state[1], [], steps, lr=1e-3, beta1=0.9, beta2=0.999,
                                    weight_decay=0.01, eps=1e-8, amsgrad=False, maximize=False)
            return torch.cat([t.flatten() for t in params + state[0] + state[1]])
        case(adamw, *[torch.randn(n, dtype=dtype) for n in sizes * 2])
for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
    # 5-11 rows with 14+ columns, and float64's 2-3 rows with odd columns: MKL's two threads round
    # them differently from one.
    for m, k, n in ((1, 1024, 256), (1, 1024, 2816), (4, 1024, 1024), (16, 64, 64), (64, 128, 128),
                    (10, 8, 24), (7, 64, 33), (9, 256, 200), (3, 64, 15), (2, 256, 33), (11, 17, 1)):
        a, w, b = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype), torch.randn(n, dtype=dtype)
        case(lambda a, w, b: F.linear(a, w, b), a, w, b)
        case(lambda a, w: torch.bmm(a.expand(3, m, k), w.t().expand(3, k, n)), a, w)
    for heads, kv_heads, q_len, kv_len in ((16, 4, 1, 64), (16, 4, 1, 300), (12, 12, 1, 128), (12, 12, 16, 16), (4, 4, 64, 64)):
        q = torch.randn(1, heads, q_len, 64, dtype=dtype)
        k, v = torch.randn(1, kv_heads, kv_len, 64, dtype=dtype), torch.randn(1, kv_heads, kv_len, 64, dtype=dtype)
        # The policy's one exception (README, "Threads"): float32 with one query per head.
        case(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=q_len > 1, enable_gqa=heads != kv_heads),
             q, k, v, bitwise=not (dtype == torch.float32 and q_len == 1))
print("RESULTS", results)
"""


@pytest.mark.parametrize("serial_us", [None, "0", "1000000"])
def test_thread_choice_never_changes_bits(run_python, serial_us) -> None:
    env = {} if serial_us is None else {"SUNRISE_SERIAL_US": serial_us}
    proc = run_python(_CASES, env=env)
    assert proc.returncode == 0, describe(proc)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULTS"))
    results = eval(line[len("RESULTS "):])
    assert len(results) > 50 and all(results), [i for i, ok in enumerate(results) if not ok]


def test_serial_threshold_is_a_device_property_and_validated(run_python) -> None:
    code = """
        import torch, torch_sunrise
        print("SERIAL", torch.sunrise.get_device_properties(0).serial_work_us)
    """
    proc = run_python(code, env={"SUNRISE_SERIAL_US": "250"})
    assert proc.returncode == 0 and "SERIAL 250" in proc.stdout, describe(proc)
    bad = run_python("import torch; torch.ones(1, device='sunrise')", env={"SUNRISE_SERIAL_US": "fast"})
    assert bad.returncode != 0 and "SUNRISE_SERIAL_US" in bad.stderr, describe(bad)
