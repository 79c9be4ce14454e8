"""Recurrent layers (LSTM, GRU, their cells, RNN tanh) against the same layers on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_same_as_cpu


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.LSTMCell, torch.nn.GRUCell])
def test_recurrent_layers(cls) -> None:
    torch.manual_seed(0)
    m = cls(4, 5)
    md = cls(4, 5)
    md.load_state_dict(m.state_dict())
    md.sunrise()
    x = torch.randn(3, 4)
    # Within tolerance: CPU eager runs LSTM and GRU layers through oneDNN's fused RNN, sunrise through
    # their cells' ops (csrc/aten/SunriseRnnOps.cpp); the cells alone are bitwise.
    if cls in (torch.nn.LSTM, torch.nn.GRU):
        assert_same_as_cpu(md(x.sunrise()), m(x), rtol=None, atol=None)
    else:
        assert_same_as_cpu(md(x.sunrise()), m(x))


def test_recurrent_rnn_tanh() -> None:
    torch.manual_seed(0)
    m = torch.nn.RNN(4, 5, num_layers=2)
    md = torch.nn.RNN(4, 5, num_layers=2)
    md.load_state_dict(m.state_dict())
    md.sunrise()
    x = torch.randn(3, 2, 4)
    assert_same_as_cpu(md(x.sunrise()), m(x))
