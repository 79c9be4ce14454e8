"""SUNRISE_MEMCHECK=1 with PyTorch: models run unchanged and equal CPU; host code touching device memory aborts with a report.

Each case runs in a fresh process, since the mode is chosen when the runtime starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

_TRAIN = textwrap.dedent(
    """
    import copy, torch, torch.nn as nn, torch.nn.functional as F
    import torch_sunrise

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 16), nn.Dropout(0.0), nn.Linear(16, 4))
    model_s = copy.deepcopy(model).to("sunrise")
    opt, opt_s = (torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (model, model_s))
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    for _ in range(2):
        for m, o, xx, yy in ((model, opt, x, y), (model_s, opt_s, x.to("sunrise"), y.to("sunrise"))):
            o.zero_grad()
            F.cross_entropy(m(xx), yy).backward()
            o.step()
    for p, p_s in zip(model.state_dict().values(), model_s.state_dict().values()):
        torch.testing.assert_close(p_s.cpu(), p, rtol=0, atol=0)
    q = torch.randn(1, 2, 8, 16)
    torch.testing.assert_close(F.scaled_dot_product_attention(q.to("sunrise"), q.to("sunrise"), q.to("sunrise"),
                                                              is_causal=True).cpu(),
                               F.scaled_dot_product_attention(q, q, q, is_causal=True), rtol=0, atol=0)
    # Random numbers, boolean-mask indexing, a print, pinned copies and an op run by the CPU fallback.
    r = torch.rand(1000, device="sunrise")
    assert 0.0 <= r.min().item() and r.max().item() < 1.0
    t = torch.arange(10.0, device="sunrise")
    assert t[t > 4].sum().item() == 35.0
    str(t)
    pinned = torch.arange(6.0).pin_memory()
    assert torch.equal(pinned.to("sunrise", non_blocking=True).cpu(), pinned)
    a = torch.randn(5, device="sunrise")
    torch.testing.assert_close(torch.dot(a, a).cpu(), torch.dot(a.cpu(), a.cpu()))
    del model_s, opt_s, r, t, a
    torch.sunrise.synchronize()
    torch.sunrise.empty_cache()
    print("memcheck-ok", torch.sunrise.memory_allocated())
    """
)

_STRAY = textwrap.dedent(
    """
    import ctypes, torch, torch_sunrise
    x = torch.arange(10.0, device="sunrise")
    torch.sunrise.synchronize()
    print("reading", flush=True)
    ctypes.c_float.from_address(x.data_ptr() + 4).value
    print("not reached", flush=True)
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SUNRISE_MEMCHECK="1", SUNRISE_FALLBACK="silent")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)


def test_models_train_unchanged_and_equal_cpu_under_memcheck() -> None:
    result = _run(_TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "memcheck-ok" in result.stdout


def test_host_read_of_device_memory_aborts_with_a_report() -> None:
    result = _run(_STRAY)
    assert result.returncode == -signal.SIGABRT, (result.returncode, result.stderr[-2000:])
    assert "reading" in result.stdout and "not reached" not in result.stdout
    assert "host code: invalid read of device memory" in result.stderr
    assert "byte 4 of a live 40-byte allocation of device 0" in result.stderr
