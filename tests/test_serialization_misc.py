"""torch.save / torch.load of sunrise tensors, with map_location both ways."""

from __future__ import annotations

import io

import pytest
import torch
from torch.testing import assert_close

from conftest import assert_same_as_cpu


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


# --------------------------------------------------------------------------
# state dicts across devices, location tags, weights_only, safetensors


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))


def _assert_same_state(actual: dict, expected: dict, device: torch.device) -> None:
    assert list(actual) == list(expected)
    for name, value in actual.items():
        assert_same_as_cpu(value, expected[name].cpu(), device=str(device), path=name)


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.two_devices)])
def test_state_dict_keeps_its_device_and_maps_anywhere(index: int) -> None:
    torch.manual_seed(1)
    model = _mlp().to(f"sunrise:{index}")
    state = model.state_dict()
    reference = {k: v.cpu() for k, v in state.items()}
    buf = save(state)
    # default: back to the device it was saved from
    _assert_same_state(torch.load(buf, weights_only=True), reference, torch.device("sunrise", index))
    targets = [("cpu", torch.device("cpu")), (torch.device("cpu"), torch.device("cpu")),
               ("sunrise:0", torch.device("sunrise", 0)), (torch.device("sunrise", 0), torch.device("sunrise", 0))]
    if torch.sunrise.device_count() > 1:
        targets += [("sunrise:1", torch.device("sunrise", 1)), (torch.device("sunrise:1"), torch.device("sunrise", 1))]
    for map_location, expected in targets:
        buf.seek(0)
        _assert_same_state(torch.load(buf, map_location=map_location, weights_only=True), reference, expected)
    # a model on another device loads it and computes the same as on the CPU
    buf.seek(0)
    other = _mlp().to("sunrise:0")
    other.load_state_dict(torch.load(buf, weights_only=True))
    cpu_model = _mlp()
    cpu_model.load_state_dict(reference)
    x = torch.randn(5, 6)
    with torch.no_grad():
        assert_close(other(x.to("sunrise:0")).cpu(), cpu_model(x))


@pytest.mark.parametrize("map_location", ["sunrise", "sunrise:0", torch.device("sunrise", 0),
                                          pytest.param("sunrise:1", marks=pytest.mark.two_devices)])
def test_cpu_checkpoint_loads_straight_onto_sunrise(map_location) -> None:
    torch.manual_seed(2)
    cpu_model = _mlp()
    buf = save(cpu_model.state_dict())
    state = torch.load(buf, map_location=map_location, weights_only=True)
    expected = torch.device(map_location)
    if expected.index is None:
        expected = torch.device("sunrise", 0)
    _assert_same_state(state, cpu_model.state_dict(), expected)
    dev_model = _mlp().to(expected)
    dev_model.load_state_dict(state)
    # assign=True adopts the loaded device tensors as parameters
    meta_model = _mlp().to("meta")
    meta_model.load_state_dict(state, assign=True)
    assert all(p.device == expected for p in meta_model.parameters())
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert_close(dev_model(x.to(expected)).cpu(), cpu_model(x))
        assert_close(meta_model(x.to(expected)).cpu(), cpu_model(x))


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.two_devices)])
def test_storage_location_tag_is_in_the_pickle(index: int) -> None:
    import zipfile

    t = torch.arange(6.0).to(f"sunrise:{index}")
    assert torch.serialization.location_tag(t.untyped_storage()) == f"sunrise:{index}"
    assert torch.serialization.location_tag(torch.zeros(1).untyped_storage()) == "cpu"
    buf = save({"t": t})
    with zipfile.ZipFile(buf) as archive:
        (pickle_name,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
        pickled = archive.read(pickle_name)
    assert f"sunrise:{index}".encode() in pickled
    # default_restore_location turns the tag back into a device storage
    restored = torch.serialization.default_restore_location(torch.zeros(3).untyped_storage(), f"sunrise:{index}")
    assert restored.device == torch.device("sunrise", index)


def test_weights_only_loads_of_sunrise_tensors() -> None:
    c = torch.randn(4, 5)
    obj = {"w": c.to("sunrise"), "ints": torch.arange(3).to("sunrise"), "nested": [c[0].to("sunrise"), 3, "x"]}
    loaded = torch.load(save(obj), weights_only=True)
    assert loaded["w"].is_sunrise and loaded["ints"].is_sunrise and loaded["nested"][0].is_sunrise
    assert_close(loaded["w"].cpu(), c, rtol=0, atol=0)
    assert loaded["ints"].cpu().tolist() == [0, 1, 2]
    assert loaded["nested"][1:] == [3, "x"]
    # parameters keep their type and requires_grad
    p = torch.nn.Parameter(c.to("sunrise"))
    lp = torch.load(save(p), weights_only=True)
    assert isinstance(lp, torch.nn.Parameter) and lp.requires_grad and lp.is_sunrise
    assert_close(lp.detach().cpu(), c, rtol=0, atol=0)


def test_load_from_a_file_with_mmap(tmp_path) -> None:
    c = torch.randn(64, 16)
    path = tmp_path / "ckpt.pt"
    torch.save({"c": c.to("sunrise")}, path)
    for map_location, expected in ((None, "sunrise:0"), ("cpu", "cpu"), ("sunrise", "sunrise:0")):
        loaded = torch.load(path, mmap=True, map_location=map_location, weights_only=True)
        assert loaded["c"].device == torch.device(expected)
        assert_close(loaded["c"].cpu(), c, rtol=0, atol=0)


def _safetensors_load_onto(path: str, device: str) -> dict:
    """safetensors.torch.load_file onto a sunrise device. safetensors validates
    ``device`` against the devices it knows (0.8 rejects "sunrise"); then the
    portable spelling is to load on the CPU and move the tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device=device)
    except SafetensorError as e:
        assert "invalid" in str(e), e
        return {k: v.to(device) for k, v in load_file(path, device="cpu").items()}


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.two_devices)])
def test_safetensors_round_trip(tmp_path, index: int) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    device = f"sunrise:{index}"
    cpu = {
        "f32": torch.randn(7, 3),
        "bf16": torch.randn(5).to(torch.bfloat16),
        "i64": torch.arange(10),
        "bool": torch.tensor([True, False, True]),
    }
    path = str(tmp_path / "t.safetensors")
    safetensors_torch.save_file({k: v.to(device) for k, v in cpu.items()}, path)  # saving from the device
    loaded = _safetensors_load_onto(path, device)
    assert sorted(loaded) == sorted(cpu)
    for k, v in loaded.items():
        assert v.device == torch.device(device) and v.dtype == cpu[k].dtype, k
        assert_close(v.cpu(), cpu[k], rtol=0, atol=0, msg=k)
    # in-memory save/load
    blob = safetensors_torch.save({"f32": cpu["f32"].to(device)})
    assert_close(safetensors_torch.load(blob)["f32"], cpu["f32"], rtol=0, atol=0)

    # a whole module on the device
    torch.manual_seed(3)
    model = _mlp().to(device)
    model_path = str(tmp_path / "m.safetensors")
    safetensors_torch.save_model(model, model_path)
    other = _mlp().to(device)
    missing, unexpected = safetensors_torch.load_model(other, model_path)
    assert not missing and not unexpected
    _assert_same_state(other.state_dict(), model.state_dict(), torch.device(device))
