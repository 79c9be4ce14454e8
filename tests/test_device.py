"""The device module (torch.sunrise), generated methods, storage methods,
torch.accelerator, and registration by autoloading."""

from __future__ import annotations

import json
import os
import signal
import time
import warnings

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import describe

EXPECTED_DEVICE_COUNT = int(os.environ.get("SUNRISE_DEVICE_COUNT", "2"))


def _cpu_data(shape=(3, 4), dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(shape, generator=g).to(dtype)


# ------------------------------------------------------------- registration


def test_backend_is_registered_as_sunrise() -> None:
    assert torch._C._get_privateuse1_backend_name() == "sunrise"
    assert torch.sunrise is torch_sunrise._sunrise_module
    dev = torch.device("sunrise")
    assert dev.type == "sunrise" and dev.index is None
    assert torch.device("sunrise:1") == torch.device("sunrise", 1)


def test_is_available_and_device_count() -> None:
    assert torch.sunrise.is_available()
    assert torch.sunrise.device_count() == EXPECTED_DEVICE_COUNT
    # Tensors can be created on every device the count announces.
    c = _cpu_data()
    for i in range(torch.sunrise.device_count()):
        d = c.to(f"sunrise:{i}")
        assert d.device == torch.device("sunrise", i)
        assert_close(d.cpu(), c)


def test_lazy_init_and_is_initialized() -> None:
    torch.sunrise._lazy_init()
    assert torch.sunrise.is_initialized()
    torch.sunrise.init()  # idempotent
    assert torch.sunrise.is_initialized()
    assert not torch.sunrise._is_in_bad_fork()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_is_in_bad_fork_and_refuses_init() -> None:
    torch.sunrise._lazy_init()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: touch nothing but the flag and the Python init path
        os.close(read_fd)
        result = {"bad_fork": torch.sunrise._is_in_bad_fork(), "init_error": None}
        try:
            torch.sunrise._lazy_init()
        except RuntimeError as e:
            result["init_error"] = str(e)
        os.write(write_fd, json.dumps(result).encode())
        os._exit(0)
    os.close(write_fd)
    deadline = time.monotonic() + 30
    while True:  # never hang the suite on a stuck child
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish")
        time.sleep(0.01)
    with os.fdopen(read_fd) as f:
        payload = f.read()
    assert status == 0
    result = json.loads(payload)
    assert result["bad_fork"] is True
    assert result["init_error"] is not None and "forked subprocess" in result["init_error"]
    assert not torch.sunrise._is_in_bad_fork()  # the parent is unaffected


@pytest.mark.two_devices
def test_current_device_and_set_device() -> None:
    c = _cpu_data()
    assert torch.sunrise.current_device() == 0
    torch.sunrise.set_device(1)
    assert torch.sunrise.current_device() == 1
    d = c.to("sunrise")  # an index-less device means the current one
    assert d.device == torch.device("sunrise", 1)
    assert_close(d.cpu(), c)
    torch.sunrise.set_device("sunrise:0")
    assert torch.sunrise.current_device() == 0
    torch.sunrise.set_device(torch.device("sunrise", 1))
    assert torch.sunrise.current_device() == 1
    torch.sunrise.set_device(0)
    assert torch.sunrise.current_device() == 0


@pytest.mark.two_devices
def test_device_context_manager_nests_and_restores() -> None:
    c = _cpu_data()
    assert torch.sunrise.current_device() == 0
    with torch.sunrise.device(1):
        assert torch.sunrise.current_device() == 1
        assert torch.empty(2, device="sunrise").device.index == 1
        with torch.sunrise.device("sunrise:0"):
            assert torch.sunrise.current_device() == 0
            d0 = c.to("sunrise")
            with torch.sunrise.device(torch.device("sunrise:1")):
                assert torch.sunrise.current_device() == 1
                d1 = c.to("sunrise")
            assert torch.sunrise.current_device() == 0
        assert torch.sunrise.current_device() == 1
        with torch.sunrise.device(None):  # no-op
            assert torch.sunrise.current_device() == 1
        with torch.sunrise.device(-1):  # no-op
            assert torch.sunrise.current_device() == 1
    assert torch.sunrise.current_device() == 0
    assert d0.device.index == 0 and d1.device.index == 1
    assert_close(d0.cpu(), c)
    assert_close(d1.cpu(), c)


@pytest.mark.two_devices
def test_device_context_manager_restores_on_exception() -> None:
    with pytest.raises(ValueError, match="boom"):
        with torch.sunrise.device(1):
            raise ValueError("boom")
    assert torch.sunrise.current_device() == 0


@pytest.mark.two_devices
def test_device_of() -> None:
    x = torch.ones(2, device="sunrise:1")
    with torch.sunrise.device_of(x):
        assert torch.sunrise.current_device() == 1
    with torch.sunrise.device_of(torch.ones(2)):  # a CPU tensor: no-op
        assert torch.sunrise.current_device() == 0
    assert torch.sunrise.current_device() == 0


@pytest.mark.two_devices
@pytest.mark.parametrize("device", [None, 0, 1, "sunrise:1", torch.device("sunrise", 1)])
def test_synchronize_drains_the_device(device) -> None:
    index = torch.sunrise._device_index(device)
    c = torch.randn(256, 256)
    pinned = c.pin_memory()
    d = torch.empty(256, 256, device=f"sunrise:{index}")
    d.copy_(pinned, non_blocking=True)
    torch.sunrise.synchronize(device)
    assert torch.sunrise.current_stream(index).query()
    assert_close(d.cpu(), c)


def test_device_name_properties_capability() -> None:
    for index in range(torch.sunrise.device_count()):
        props = torch.sunrise.get_device_properties(index)
        assert isinstance(props.name, str) and props.name
        assert torch.sunrise.get_device_name(index) == props.name
        assert torch.sunrise.get_device_name(f"sunrise:{index}") == props.name
        assert torch.sunrise.get_device_capability(index) == (props.major, props.minor)
        assert props.total_memory > 0
        assert props.multi_processor_count >= 1
        assert props.max_threads_per_block >= 1 and props.warp_size >= 1
        assert "sunrise" in repr(props).lower() or props.name in repr(props)
    assert torch.sunrise.get_device_properties() == torch.sunrise.get_device_properties(
        torch.sunrise.current_device()
    )
    # The reported capacity is what mem_get_info reports as total.
    _, total = torch.sunrise.mem_get_info(0)
    assert total == torch.sunrise.get_device_properties(0).total_memory


def test_amp_supported_dtypes() -> None:
    dtypes = torch.sunrise.get_amp_supported_dtype()
    assert torch.bfloat16 in dtypes and torch.float16 in dtypes
    assert torch.sunrise.is_bf16_supported()


@pytest.mark.two_devices
def test_manual_seed_all_seeds_every_device() -> None:
    torch.sunrise.manual_seed_all(7)
    a0 = torch.randn(8, device="sunrise:0")
    a1 = torch.randn(8, device="sunrise:1")
    torch.sunrise.manual_seed_all(7)
    b0 = torch.randn(8, device="sunrise:0")
    b1 = torch.randn(8, device="sunrise:1")
    assert_close(b0.cpu(), a0.cpu(), rtol=0, atol=0)
    assert_close(b1.cpu(), a1.cpu(), rtol=0, atol=0)
    assert torch.sunrise.initial_seed() == 7
    with torch.sunrise.device(1):
        assert torch.sunrise.initial_seed() == 7


# ------------------------------------------------- generated tensor methods


def test_tensor_is_sunrise_and_sunrise_method() -> None:
    c = _cpu_data()
    assert not c.is_sunrise
    d = c.sunrise()
    assert d.is_sunrise
    assert d.device == torch.device("sunrise", 0)
    assert_close(d.cpu(), c)
    assert not d.cpu().is_sunrise


@pytest.mark.two_devices
def test_tensor_sunrise_with_index_and_to_sunrise_1() -> None:
    c = _cpu_data()
    for d in (c.sunrise(1), c.sunrise("sunrise:1"), c.to("sunrise:1"), c.to(torch.device("sunrise", 1))):
        assert d.device == torch.device("sunrise", 1)
        assert_close(d.cpu(), c)
    d = c.to("sunrise:1", dtype=torch.float64)
    assert d.dtype == torch.float64 and d.device.index == 1
    assert_close(d.cpu(), c.double())


@pytest.mark.two_devices
def test_module_sunrise_moves_parameters_and_buffers() -> None:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    x = torch.randn(5, 4)
    expected = m(x)
    md = m.sunrise(1)
    assert md is m
    assert all(p.device == torch.device("sunrise", 1) for p in m.parameters())
    assert all(b.device == torch.device("sunrise", 1) for b in m.buffers())
    assert_close(m(x.to("sunrise:1")).cpu(), expected)
    m.sunrise()  # back to the current device
    assert all(p.device == torch.device("sunrise", 0) for p in m.parameters())
    assert_close(m(x.sunrise()).cpu(), expected)


def test_module_to_keeps_parameter_identity_and_ties() -> None:
    lin = torch.nn.Linear(2, 2)
    weight = lin.weight
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    lin.to("sunrise")
    assert lin.weight is weight and weight.is_sunrise
    lin(torch.ones(1, 2, device="sunrise")).sum().backward()
    opt.step()  # updates the parameters the module uses
    emb = torch.nn.Embedding(4, 2)
    head = torch.nn.Linear(2, 4, bias=False)
    head.weight = emb.weight
    emb.to("sunrise")
    head.to("sunrise")
    assert head.weight is emb.weight


def test_packed_sequence_sunrise() -> None:
    from torch.nn.utils.rnn import pack_padded_sequence

    x = torch.randn(3, 2, 4)
    packed = pack_padded_sequence(x, torch.tensor([3, 2]))
    moved = packed.sunrise()
    assert moved.data.is_sunrise
    assert moved.batch_sizes.device.type == "cpu"  # as on CUDA
    assert_close(moved.data.cpu(), packed.data)
    assert_close(moved.batch_sizes, packed.batch_sizes)


# ---------------------------------------------------------- storage methods


def _storage_as_tensor(storage: torch.UntypedStorage, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor over a copy of the storage's bytes."""
    return torch.tensor([], dtype=dtype).set_(storage.cpu())


def test_untyped_storage_sunrise_roundtrip() -> None:
    c = torch.arange(6, dtype=torch.float32)
    s = c.untyped_storage().sunrise()
    assert s.is_sunrise
    assert s.device == torch.device("sunrise", 0)
    assert s.nbytes() == c.untyped_storage().nbytes()
    assert_close(_storage_as_tensor(s, torch.float32), c)
    back = s.cpu()
    assert back.device.type == "cpu" and not back.is_sunrise
    assert bytes(back) == bytes(c.untyped_storage())


@pytest.mark.two_devices
def test_untyped_storage_on_device_1_and_constructor() -> None:
    c = torch.arange(4, dtype=torch.int64)
    s = c.untyped_storage().sunrise(1)
    assert s.device == torch.device("sunrise", 1)
    assert_close(_storage_as_tensor(s, torch.int64), c)
    fresh = torch.UntypedStorage(16, device="sunrise:1")
    assert fresh.device == torch.device("sunrise", 1) and fresh.nbytes() == 16


def test_tensor_storage_of_device_tensor() -> None:
    c = torch.arange(5, dtype=torch.float32)
    d = c.sunrise()
    assert d.untyped_storage().is_sunrise
    assert d.untyped_storage().data_ptr() == d.data_ptr()
    assert_close(_storage_as_tensor(d.untyped_storage(), torch.float32), c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is deprecated
        typed = c.storage().sunrise()
        assert typed.is_sunrise and typed.device.type == "sunrise"
        assert typed.cpu().tolist() == c.tolist()


def test_storage_copy_and_resize_on_device() -> None:
    d = torch.zeros(4, device="sunrise")
    d.untyped_storage().copy_(torch.arange(4, dtype=torch.float32).untyped_storage())
    assert_close(d.cpu(), torch.arange(4, dtype=torch.float32))
    s = d.untyped_storage()
    s.resize_(64)  # grows in place; the tensor keeps its elements
    assert s.nbytes() == 64
    assert_close(d.cpu(), torch.arange(4, dtype=torch.float32))


# ------------------------------------------------------- torch.accelerator


def test_accelerator_api() -> None:
    assert torch.accelerator.is_available()
    acc = torch.accelerator.current_accelerator()
    assert acc is not None and acc.type == "sunrise"
    assert torch.accelerator.device_count() == torch.sunrise.device_count()
    c = torch.randn(64, 64).pin_memory()
    d = torch.empty(64, 64, device="sunrise")
    d.copy_(c, non_blocking=True)
    torch.accelerator.synchronize()
    assert torch.sunrise.current_stream().query()
    assert_close(d.cpu(), c)


@pytest.mark.two_devices
def test_accelerator_device_index() -> None:
    assert torch.accelerator.current_device_index() == 0
    torch.accelerator.set_device_index(1)
    try:
        assert torch.sunrise.current_device() == 1
        assert torch.accelerator.current_device_index() == 1
        assert torch.empty(1, device="sunrise").device.index == 1
    finally:
        torch.accelerator.set_device_index(0)
    assert torch.sunrise.current_device() == 0


@pytest.mark.two_devices
def test_set_default_device_sunrise() -> None:
    torch.set_default_device("sunrise:1")
    try:
        x = torch.arange(6.0)
        y = torch.zeros(2, 3)
    finally:
        torch.set_default_device(None)
    assert x.device == torch.device("sunrise", 1) and y.device == torch.device("sunrise", 1)
    assert_close(x.cpu(), torch.arange(6.0))
    assert_close(y.cpu(), torch.zeros(2, 3))


# ---------------------------------------------------------------- autoload


def test_import_torch_autoloads_sunrise(run_python) -> None:
    proc = run_python(
        """
        import json, sys
        import torch
        out = {"autoloaded": "torch_sunrise" in sys.modules,
               "backend": torch._C._get_privateuse1_backend_name(),
               "initialized_before": torch.sunrise.is_initialized()}
        torch.manual_seed(0)
        x = torch.randn(4, device="sunrise")
        out["initialized_after"] = torch.sunrise.is_initialized()
        out["device"] = str(x.device)
        out["is_sunrise"] = x.is_sunrise
        out["doubled"] = (x * 2).cpu().tolist()
        out["values"] = x.cpu().tolist()
        print(json.dumps(out))
        """,
        env={"SUNRISE_FALLBACK": "silent"},
    )
    assert proc.returncode == 0, describe(proc)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["autoloaded"] and out["backend"] == "sunrise"
    assert out["device"] == "sunrise:0" and out["is_sunrise"]
    assert not out["initialized_before"] and out["initialized_after"]
    assert_close(torch.tensor(out["doubled"]), torch.tensor(out["values"]) * 2)


def test_importing_torch_sunrise_before_torch_works(run_python) -> None:
    # torch's own import runs the autoload entry point while torch_sunrise is
    # still initializing; that must not fail.
    proc = run_python(
        """
        import torch_sunrise
        import torch
        x = torch.arange(3.0, device="sunrise:1")
        print((x + 1).cpu().tolist())
        """,
        env={"SUNRISE_FALLBACK": "silent"},
    )
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip().splitlines()[-1] == "[1.0, 2.0, 3.0]"


def test_a_broken_install_does_not_break_import_torch(run_python) -> None:
    # An extension that cannot load (simulated by blocking torch_sunrise._C)
    # only warns when autoloaded: CPU-only code keeps working.
    proc = run_python(
        """
        import sys, warnings
        sys.modules["torch_sunrise._C"] = None  # makes `from . import _C` raise ImportError
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch
        print(any("could not be loaded" in str(w.message) for w in caught))
        print((torch.ones(2) * 3).tolist())
        """
    )
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.split() == ["True", "[3.0,", "3.0]"]


def test_autoload_disabled_leaves_plain_torch(run_python) -> None:
    proc = run_python(
        """
        import json, sys
        import torch
        out = {"loaded": "torch_sunrise" in sys.modules,
               "backend": torch._C._get_privateuse1_backend_name(),
               "has_module": hasattr(torch, "sunrise"),
               "has_is_sunrise": hasattr(torch.Tensor, "is_sunrise")}
        try:
            torch.device("sunrise")
            out["device_error"] = None
        except RuntimeError as e:
            out["device_error"] = str(e)
        a = torch.arange(6.0).view(2, 3)
        out["cpu_result"] = (a @ a.t()).tolist()
        print(json.dumps(out))
        """,
        env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"},
    )
    assert proc.returncode == 0, describe(proc)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["loaded"]
    assert out["backend"] == "privateuseone"
    assert not out["has_module"] and not out["has_is_sunrise"]
    assert out["device_error"] is not None and "sunrise" in out["device_error"]
    a = torch.arange(6.0).view(2, 3)
    assert_close(torch.tensor(out["cpu_result"]), a @ a.t())
    assert "sunrise" not in proc.stderr.lower()
