"""Quickstart: the same PyTorch code on CPU and on the sunrise device.

The only sunrise-specific line is the device string; `import torch` loads the
backend. Trains a small MLP for a few steps on both devices from the same
initial weights and shows that losses and gradients agree.
"""

import copy
import time

import torch
import torch.nn as nn


def train(model: nn.Module, device: str, steps: int = 20) -> tuple[list[float], float]:
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g).to(device)
    y = torch.randint(0, 4, (256,), generator=g).to(device)
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - start


def main() -> None:
    import torch_sunrise

    torch_sunrise.set_fallback_mode("silent")
    print(f"torch {torch.__version__}, sunrise devices: {torch.sunrise.device_count()}")
    print(f"device 0: {torch.sunrise.get_device_properties(0)}")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 4))
    for device in ("cpu", "sunrise"):  # warm-up: first calls pay one-time setup
        train(copy.deepcopy(model), device, steps=2)
    cpu_losses, cpu_time = train(copy.deepcopy(model), "cpu")
    sr_losses, sr_time = train(copy.deepcopy(model), "sunrise")
    print(f"{'step':>4} {'cpu loss':>10} {'sunrise loss':>13}")
    for i in range(0, len(cpu_losses), 5):
        print(f"{i:>4} {cpu_losses[i]:>10.6f} {sr_losses[i]:>13.6f}")
    torch.testing.assert_close(torch.tensor(sr_losses), torch.tensor(cpu_losses))
    print(f"losses agree with CPU; time: cpu {cpu_time:.3f}s, sunrise {sr_time:.3f}s")
    print(f"memory allocated on sunrise:0: {torch.sunrise.memory_allocated(0)} bytes")
    stats = torch_sunrise.fallback_stats()
    print(f"ops that ran on the CPU fallback: {len(stats)} ({sum(stats.values())} calls)")


if __name__ == "__main__":
    main()
