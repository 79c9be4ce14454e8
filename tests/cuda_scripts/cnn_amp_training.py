"""A CNN training loop as CUDA code writes it: .cuda(), torch.autocast("cuda"), GradScaler("cuda"),
CUDA events and memory statistics; on a machine without CUDA it runs on the CPU. Prints its
losses (as hex floats) and checksums of the weights, for comparison between runs. CNN_AMP=0
trains in float32 (no autocast)."""
import os

import torch
import torch.nn as nn

amp = os.environ.get("CNN_AMP", "1") == "1"

use_cuda = torch.cuda.is_available()
device = torch.device("cuda" if use_cuda else "cpu")
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
)
if use_cuda:
    model = model.cuda()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scaler = torch.amp.GradScaler("cuda" if use_cuda else "cpu")
images = torch.randn(16, 3, 16, 16)
labels = torch.randint(0, 10, (16,))
if use_cuda:
    images, labels = images.cuda(non_blocking=True), labels.cuda()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
for step in range(4):
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        loss = nn.functional.cross_entropy(model(images), labels)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    print("loss", step, loss.float().item().hex())
if use_cuda:
    end.record()
    torch.cuda.synchronize()
    assert start.elapsed_time(end) > 0
    assert torch.cuda.memory_allocated() > 0 and torch.cuda.max_memory_allocated() >= torch.cuda.memory_allocated()
    assert next(model.parameters()).is_cuda
    print("device", next(model.parameters()).device)
for name, p in model.state_dict().items():
    print("weight", name, p.float().sum().item().hex())
