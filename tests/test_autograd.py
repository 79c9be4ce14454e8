"""Autograd and training on sunrise, against the same computation on the CPU."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from conftest import assert_same_as_cpu


def make_mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 4),
        torch.nn.LogSoftmax(dim=-1),
    )


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 8, generator=g), torch.randint(0, 4, (6,), generator=g)


def assert_params_close(dev_model: torch.nn.Module, cpu_model: torch.nn.Module, grads: bool = False) -> None:
    """The sunrise model's parameters (and their gradients) are the CPU model's (assert_same_as_cpu)."""
    for (name, p_dev), (_, p_cpu) in zip(dev_model.named_parameters(), cpu_model.named_parameters()):
        assert_same_as_cpu(p_dev, p_cpu, path=f"parameter {name}")
        if grads:
            assert p_dev.grad is not None, name
            assert_same_as_cpu(p_dev.grad, p_cpu.grad, path=f"gradient of {name}")


@pytest.mark.parametrize("device", ["sunrise:0", pytest.param("sunrise:1", marks=pytest.mark.two_devices)])
def test_mlp_forward_backward_matches_cpu(device) -> None:
    cpu_model = make_mlp()
    dev_model = copy.deepcopy(cpu_model).to(device)
    x, y = batch()
    out_cpu = cpu_model(x)
    loss_cpu = F.nll_loss(out_cpu, y)
    loss_cpu.backward()
    out_dev = dev_model(x.to(device))
    loss_dev = F.nll_loss(out_dev, y.to(device))
    loss_dev.backward()
    assert out_dev.device == torch.device(device) and loss_dev.device == torch.device(device)
    assert_close(out_dev.detach().cpu(), out_cpu.detach())
    assert_close(loss_dev.detach().cpu(), loss_cpu.detach())
    assert_params_close(dev_model, cpu_model, grads=True)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        pytest.param(lambda p: torch.optim.SGD(p, lr=0.1), id="sgd"),
        pytest.param(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2), id="sgd_momentum"),
        pytest.param(lambda p: torch.optim.AdamW(p, lr=1e-2), id="adamw_default"),
        pytest.param(lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False), id="adamw_for_loop"),
        pytest.param(lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=True), id="adamw_foreach"),
        pytest.param(lambda p: torch.optim.AdamW(p, lr=1e-2, fused=True), id="adamw_fused"),
        pytest.param(lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True), id="adamw_amsgrad"),
    ],
)
def test_optimizer_steps_match_cpu(make_optimizer) -> None:
    cpu_model = make_mlp()
    dev_model = copy.deepcopy(cpu_model).sunrise()
    opt_cpu = make_optimizer(cpu_model.parameters())
    opt_dev = make_optimizer(dev_model.parameters())
    for step in range(3):
        x, y = batch(step)
        for model, opt, xx, yy in ((cpu_model, opt_cpu, x, y), (dev_model, opt_dev, x.sunrise(), y.sunrise())):
            opt.zero_grad()
            F.nll_loss(model(xx), yy).backward()
            opt.step()
    assert_params_close(dev_model, cpu_model)
    for state_dev, state_cpu in zip(opt_dev.state.values(), opt_cpu.state.values()):
        for key, value in state_cpu.items():
            if isinstance(value, torch.Tensor):
                assert_close(state_dev[key].cpu(), value, msg=f"optimizer state {key}")


def test_lr_scheduler_and_grad_clipping() -> None:
    cpu_model = make_mlp()
    dev_model = copy.deepcopy(cpu_model).sunrise()
    runs = []
    for model, dev in ((cpu_model, "cpu"), (dev_model, "sunrise")):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        norms = []
        for step in range(2):
            x, y = batch(step)
            opt.zero_grad()
            F.nll_loss(model(x.to(dev)), y.to(dev)).backward()
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1).cpu())
            opt.step()
            sched.step()
        runs.append(torch.stack(norms))
    assert_close(runs[1], runs[0])
    assert_params_close(dev_model, cpu_model)


@pytest.mark.parametrize(
    "fn",
    [
        pytest.param(lambda x: (torch.sort(x.sin(), 1).values.cumsum(1) * torch.arange(5.0, device=x.device)).sum(), id="sin_sort_cumsum"),
        pytest.param(lambda x: (x[torch.tensor([0, 2, 2], device=x.device)][:, 1:4].unfold(1, 2, 1) ** 2).sum(), id="index_unfold"),
        pytest.param(lambda x: torch.masked_select(x, x > 0).exp().sum(), id="masked_select"),
        pytest.param(lambda x: torch.topk(x, 2, dim=1).values.prod(), id="topk_prod"),
        pytest.param(lambda x: (x @ x.t()).diagonal().sum() + torch.cat([x, x * 2]).std(), id="matmul_diag_cat"),
        pytest.param(lambda x: torch.where(x > 0, x.tanh(), x.sigmoid()).max(dim=0).values.sum(), id="where_max"),
        pytest.param(lambda x: F.softmax(x, -1).log().mean() + F.layer_norm(x, (5,)).pow(2).sum(), id="softmax_layernorm"),
        pytest.param(lambda x: torch.stack(x.split(2)).mean(0).norm(), id="split_stack_norm"),
        pytest.param(lambda x: x.clone().index_put_((torch.tensor([1, 3]),), torch.ones(2, 5, device=x.device) * 3).sum() * x.sum(), id="index_put"),
        pytest.param(lambda x: torch.view_as_complex(x[:, :4].reshape(4, 2, 2).contiguous()).abs().sum(), id="complex"),
    ],
)
def test_backward_through_fallback_ops(fn) -> None:
    c = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    d = c.detach().sunrise().requires_grad_()
    out_c = fn(c)
    out_d = fn(d)
    assert out_d.is_sunrise
    assert_close(out_d.detach().cpu(), out_c.detach())
    out_c.backward()
    out_d.backward()
    assert d.grad.is_sunrise
    assert_close(d.grad.cpu(), c.grad)


def test_gradients_flow_through_device_copies_to_a_cpu_leaf() -> None:
    c = torch.randn(3, requires_grad=True)
    ref = torch.randn(3, requires_grad=True)
    (ref * torch.arange(3.0)).sum().backward()
    (c.sunrise() * torch.arange(3.0, device="sunrise")).sum().backward()
    assert c.grad.device.type == "cpu"
    assert_close(c.grad, ref.grad)
    c.grad = None
    (c.to("sunrise", dtype=torch.float64) ** 2).sum().backward()
    assert_close(c.grad, 2 * c.detach())


@pytest.mark.two_devices
def test_gradients_across_devices() -> None:
    c = torch.randn(4, requires_grad=True)
    d0 = c.detach().to("sunrise:0").requires_grad_()
    loss_c = (c * 2).exp().sum()
    loss_d = (d0.to("sunrise:1") * 2).exp().to("sunrise:0").sum()
    loss_c.backward()
    loss_d.backward()
    assert d0.grad.device == torch.device("sunrise", 0)
    assert_close(d0.grad.cpu(), c.grad)


def test_double_backward() -> None:
    c = torch.randn(5, requires_grad=True)
    d = c.detach().sunrise().requires_grad_()
    results = []
    for x in (c, d):
        y = (x**3).sin().sum()
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), x)
        results.append((g.detach().cpu(), gg.cpu()))
    assert_close(results[1][0], results[0][0])
    assert_close(results[1][1], results[0][1])


def test_batchnorm_training_grads_and_running_stats() -> None:
    torch.manual_seed(0)
    # (no convolution here: see tests/ops/test_convolution_attention.py)
    cpu_model = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(75, 4))
    dev_model = copy.deepcopy(cpu_model).sunrise()
    x = torch.randn(2, 3, 5, 5)
    for model, xx in ((cpu_model, x), (dev_model, x.sunrise())):
        model(xx).pow(2).mean().backward()
    assert_params_close(dev_model, cpu_model, grads=True)
    for (name, b_dev), (_, b_cpu) in zip(dev_model.named_buffers(), cpu_model.named_buffers()):
        assert b_dev.is_sunrise
        assert_close(b_dev.cpu(), b_cpu, msg=f"buffer {name}")


def test_embedding_and_cross_entropy() -> None:
    torch.manual_seed(0)
    cpu_model = torch.nn.Sequential(torch.nn.Embedding(10, 6), torch.nn.Flatten(), torch.nn.Linear(18, 5))
    dev_model = copy.deepcopy(cpu_model).sunrise()
    tokens = torch.tensor([[1, 2, 3], [4, 4, 9]])
    target = torch.tensor([0, 3])
    for model, t, y in ((cpu_model, tokens, target), (dev_model, tokens.sunrise(), target.sunrise())):
        F.cross_entropy(model(t), y, label_smoothing=0.1).backward()
    assert_params_close(dev_model, cpu_model, grads=True)


def test_no_grad_and_requires_grad_flags() -> None:
    c = torch.randn(3, requires_grad=True)
    d = c.detach().sunrise().requires_grad_()
    assert d.is_leaf and d.requires_grad
    with torch.no_grad():
        e = d * 2
    assert not e.requires_grad and e.grad_fn is None
    f = d.detach()
    assert not f.requires_grad and f.data_ptr() == d.data_ptr()
    for x in (c, d):
        g = x * 2
        assert g.requires_grad and g.grad_fn is not None
        g.sum().backward()
    assert_close(d.grad.cpu(), c.grad)
    # Gradients accumulate over backward passes.
    for x in (c, d):
        (x * 3).sum().backward()
    assert_close(d.grad.cpu(), c.grad)
