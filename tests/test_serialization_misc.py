"""torch.save / torch.load of sunrise tensors, with map_location both ways."""

from __future__ import annotations

import io

import pytest
import torch
from torch.testing import assert_close


def save(obj) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool, torch.complex64])
def test_round_trip_keeps_device_and_values(dtype) -> None:
    c = torch.arange(12).view(3, 4).to(dtype)
    loaded = torch.load(save(c.to("sunrise")))
    assert loaded.device == torch.device("sunrise", 0)
    assert loaded.dtype == dtype
    assert_close(loaded.cpu(), c, rtol=0, atol=0)


@pytest.mark.two_devices
def test_round_trip_from_device_1() -> None:
    c = torch.randn(3, 4)
    loaded = torch.load(save(c.to("sunrise:1")))
    assert loaded.device == torch.device("sunrise", 1)
    assert_close(loaded.cpu(), c, rtol=0, atol=0)


@pytest.mark.parametrize("map_location", ["cpu", torch.device("cpu"), lambda storage, loc: storage])
def test_load_sunrise_tensor_onto_cpu(map_location) -> None:
    c = torch.randn(3, 4)
    loaded = torch.load(save(c.to("sunrise")), map_location=map_location)
    assert loaded.device.type == "cpu"
    assert_close(loaded, c, rtol=0, atol=0)


@pytest.mark.parametrize(
    "map_location,expected",
    [
        ("sunrise", "sunrise:0"),
        ("sunrise:0", "sunrise:0"),
        pytest.param("sunrise:1", "sunrise:1", marks=pytest.mark.two_devices),
        pytest.param(torch.device("sunrise", 1), "sunrise:1", marks=pytest.mark.two_devices),
    ],
)
def test_load_cpu_tensor_onto_sunrise(map_location, expected) -> None:
    c = torch.randn(3, 4)
    loaded = torch.load(save(c), map_location=map_location)
    assert loaded.device == torch.device(expected)
    assert_close(loaded.cpu(), c, rtol=0, atol=0)


@pytest.mark.two_devices
def test_map_location_dict_between_devices() -> None:
    c = torch.randn(5)
    loaded = torch.load(save(c.to("sunrise:1")), map_location={"sunrise:1": "sunrise:0"})
    assert loaded.device == torch.device("sunrise", 0)
    assert_close(loaded.cpu(), c, rtol=0, atol=0)


def test_views_keep_sharing_storage() -> None:
    c = torch.arange(6.0)
    d = c.to("sunrise")
    loaded = torch.load(save({"base": d, "view": d[2:4]}))
    cpu_loaded = torch.load(save({"base": c, "view": c[2:4]}))
    loaded["view"].fill_(-1.0)
    cpu_loaded["view"].fill_(-1.0)
    assert loaded["base"].is_sunrise and loaded["view"].is_sunrise
    assert_close(loaded["base"].cpu(), cpu_loaded["base"])


def test_state_dict_round_trip_into_cpu_and_sunrise_modules() -> None:
    torch.manual_seed(0)
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).sunrise()
    buf = save(src.state_dict())
    cpu_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    cpu_model.load_state_dict(torch.load(buf, map_location="cpu"))
    buf.seek(0)
    dev_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).sunrise()
    dev_model.load_state_dict(torch.load(buf))
    for (name, a), (_, b) in zip(src.state_dict().items(), cpu_model.state_dict().items()):
        assert b.device.type == "cpu"
        assert_close(b, a.cpu(), rtol=0, atol=0, msg=name)
    for (name, a), (_, b) in zip(src.state_dict().items(), dev_model.state_dict().items()):
        assert b.is_sunrise
        assert_close(b.cpu(), a.cpu(), rtol=0, atol=0, msg=name)
    x = torch.randn(2, 3)
    src.eval(), cpu_model.eval(), dev_model.eval()
    assert_close(dev_model(x.sunrise()).detach().cpu(), cpu_model(x).detach())
