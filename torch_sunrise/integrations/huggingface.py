"""Make ``accelerate`` and ``transformers`` treat the sunrise device like CUDA.

Both libraries choose "the accelerator" from hard-coded vendor lists
(cuda, xpu, npu, mlu, musa, hpu, mps, ...) and fall back to the CPU, so on a
machine whose accelerator is sunrise, ``Accelerator()``, ``PartialState()``,
``TrainingArguments()``, ``device_map="auto"`` and ``pipeline()`` pick the CPU,
and ``bf16=True`` / ``fp16=True`` are refused. This module patches the few
functions that make those decisions so that they pick sunrise exactly where
they would have picked CUDA. Every patch:

* only changes the answer when the stock code would have chosen the CPU *and*
  sunrise is PyTorch's current accelerator (``torch.accelerator``), so CUDA
  machines and explicit CPU requests (``use_cpu=True``, ``Accelerator(cpu=True)``,
  ``device="cpu"``, ``ACCELERATE_USE_CPU=1``) behave exactly as without it;
* is applied to the module that defines the function, right after that module
  is imported (an import hook), so names copied elsewhere by
  ``from ... import`` see the patched function; nothing from ``accelerate`` or
  ``transformers`` is imported by this module itself.

The patches (see ``docs/huggingface.md`` for the why of each):

===============================================  ====================================================
``accelerate.state.PartialState.default_device``  sunrise instead of the CPU fallback
``accelerate...PartialState._prepare_backend``    several processes on sunrise: MULTI_GPU with the
``/ .set_device``                                 sccl backend, ``sunrise:<local rank>`` each
``accelerate.utils.modeling.get_max_memory``      sunrise devices' free memory (``mem_get_info``) for
                                                  ``device_map="auto"``
``accelerate.utils.modeling.get_grad_scaler``     ``torch.amp.GradScaler("sunrise")`` instead of "cuda"
``accelerate.Accelerator.__init__``               "sunrise" added to its fp16-capable device tuple
``transformers...is_torch_bf16_gpu_available``    true when sunrise supports bfloat16
``transformers.TrainingArguments._setup_devices`` ``sunrise:0`` instead of the CPU fallback
``transformers.Pipeline.__init__``                ``device=None`` / ``device=<int>`` mean ``sunrise:<int>``
``transformers...GenerationMixin``                a static cache compiles the decoding forward on
``._valid_auto_compile_criteria``                 sunrise as on CUDA (``torch.compile``)
``transformers...PreTrainedModel``                 ``mode="reduce-overhead"`` (generate's default)
``.get_compiled_call``                            replays graphs: backend ``sunrise_graphs``
``sentence_transformers...get_device_name``       "sunrise" instead of "cpu" (``SentenceTransformer()``)
``transformers.integrations.hub_kernels``         ``kernels.kernelize`` gets ``torch.device("sunrise")``,
``._kernels_kernelize``                           not the name its fixed device list refuses: layers
                                                  with no sunrise hub kernel keep their torch forward
``peft.utils.save_and_load.load_peft_weights``    adapter weights for sunrise read on the CPU, then
                                                  moved (safetensors knows no "sunrise" device)
===============================================  ====================================================

Usage: nothing. ``import torch`` loads torch_sunrise, which installs the import
hook (``SUNRISE_HF_INTEGRATION=0`` in the environment disables it). Explicitly:
:func:`enable`, :func:`disable`, :func:`is_enabled`, :func:`applied_patches`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import os
import sys
import threading
from typing import Any, Callable, Optional

import torch

from .. import _import_hooks

__all__ = ["ENV_SWITCH", "applied_patches", "disable", "enable", "is_enabled"]

ENV_SWITCH = "SUNRISE_HF_INTEGRATION"

_logger = logging.getLogger(__name__)
_BACKEND = "sunrise"
# Modules whose globals may hold copies (``from x import f``) of a patched function.
_REBIND_PREFIXES = ("accelerate", "transformers", "peft", "sentence_transformers", "trl", "optimum", "diffusers")

_lock = threading.RLock()
_enabled = False
_hooked = False  # the import hooks are installed once; _enabled gates them
# (owner, attribute, original value, description) of every applied patch, in order.
_applied: list[tuple[Any, str, Any, str]] = []
_patched_modules: set[str] = set()


# --------------------------------------------------------------------------- helpers


def _sunrise_is_accelerator() -> bool:
    """True when sunrise is PyTorch's current accelerator (so no CUDA/XPU/... device is)."""
    if not hasattr(torch, _BACKEND):
        return False
    try:
        accelerator = torch.accelerator.current_accelerator()
    except RuntimeError:
        return False
    return accelerator is not None and accelerator.type == _BACKEND


def _device_type(device: Any) -> Optional[str]:
    """The type of a device given as a ``torch.device`` or a string ("sunrise:1"); None otherwise."""
    if isinstance(device, torch.device):
        return device.type
    if isinstance(device, str):
        try:
            return torch.device(device).type
        except RuntimeError:  # not a device string torch knows
            return None
    return None


def _set_attr(owner: Any, attr: str, value: Any, what: str) -> None:
    """Replace ``owner.attr`` by ``value``, remembering the original for :func:`disable`."""
    original = owner.__dict__[attr] if attr in getattr(owner, "__dict__", {}) else getattr(owner, attr)
    setattr(owner, attr, value)
    _applied.append((owner, attr, original, what))


def _install(owner: Any, name: str, wrapper: Callable, original: Callable, what: str) -> None:
    """Put ``wrapper`` (of ``original``) at ``owner.name``, marked as this integration's."""
    functools.update_wrapper(wrapper, original)
    wrapper.__sunrise_patch__ = True  # type: ignore[attr-defined]
    _set_attr(owner, name, wrapper, what)


def _patch_function(module: Any, name: str, make: Callable[[Callable], Callable], what: str) -> None:
    """Wrap the module-level function ``module.name`` with ``make(original)``; also
    rebind copies of the original already made by ``from module import name``."""
    original = getattr(module, name, None)
    if original is None or getattr(original, "__sunrise_patch__", False):
        return
    wrapper = make(original)
    _install(module, name, wrapper, original, what)
    for other_name, other in list(sys.modules.items()):
        if other is None or other is module or not other_name.startswith(_REBIND_PREFIXES):
            continue
        namespace = getattr(other, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            if value is original:
                _set_attr(other, attr, wrapper, f"{other_name}.{attr} (copy of {what})")


# --------------------------------------------------------------------------- accelerate


def _patch_accelerate_state(module: Any) -> None:
    _patch_accelerate_distributed(module)
    partial_state = module.PartialState
    original = partial_state.__dict__.get("default_device")
    if not isinstance(original, property) or getattr(original.fget, "__sunrise_patch__", False):
        return

    def default_device(self: Any) -> torch.device:
        device = original.fget(self)
        if device.type == "cpu" and _sunrise_is_accelerator():
            return torch.device(_BACKEND)
        return device

    functools.update_wrapper(default_device, original.fget)
    default_device.__sunrise_patch__ = True  # type: ignore[attr-defined]
    _set_attr(
        partial_state,
        "default_device",
        property(default_device, doc=original.__doc__),
        "accelerate.PartialState.default_device",
    )


# The backend accelerate initializes for sunrise processes: sccl for sunrise tensors, gloo for
# CPU ones (accelerate gathers some CPU objects); also what marks such a state below.
_ACCELERATE_BACKEND = "cpu:gloo,sunrise:sccl"


def _patch_accelerate_distributed(module: Any) -> None:
    """Several processes (torchrun, ``accelerate launch``): accelerate knows each vendor's
    distributed type (MULTI_GPU, MULTI_NPU, ...) and otherwise runs every process alone on device
    0. Sunrise processes take CUDA's type, MULTI_GPU (DDP with one device per process), with the
    sccl backend and ``sunrise:<local rank>`` as their device."""
    partial_state = module.PartialState
    prepare = partial_state.__dict__.get("_prepare_backend")
    set_device = partial_state.__dict__.get("set_device")
    if prepare is None or set_device is None or getattr(prepare, "__sunrise_patch__", False):
        return
    distributed_type = module.DistributedType

    def _prepare_backend(self: Any, cpu: bool = False, sagemaker_dp: bool = False,
                         backend: Optional[str] = None) -> tuple:
        chosen, kind = prepare(self, cpu, sagemaker_dp, backend)
        if (kind == distributed_type.NO and not cpu and int(os.environ.get("LOCAL_RANK", -1)) != -1
                and _sunrise_is_accelerator() and (backend is None or "sccl" in backend)):
            return backend or _ACCELERATE_BACKEND, distributed_type.MULTI_GPU
        return chosen, kind

    def _set_device(self: Any) -> None:
        if self.device is None and self.distributed_type == distributed_type.MULTI_GPU and "sccl" in str(self.backend):
            self.device = torch.device(_BACKEND, self.local_process_index % torch.sunrise.device_count())
            torch.sunrise.set_device(self.device)
            return
        set_device(self)

    _install(partial_state, "_prepare_backend", _prepare_backend, prepare, "accelerate.PartialState._prepare_backend")
    _install(partial_state, "set_device", _set_device, set_device, "accelerate.PartialState.set_device")


def _accelerate_state_device() -> Optional[torch.device]:
    state = sys.modules.get("accelerate.state")
    if state is None:
        return None
    return state.PartialState._shared_state.get("device")


def _patch_accelerate_modeling(module: Any) -> None:
    def make_get_max_memory(original: Callable) -> Callable:
        def get_max_memory(max_memory: Optional[dict] = None) -> dict:
            if not _sunrise_is_accelerator():
                return original(max_memory)
            if max_memory is None:
                found = original(None)
                if any(isinstance(key, int) for key in found):
                    return found  # another accelerator answered
                memory: dict = {}
                for index in range(torch.sunrise.device_count()):
                    memory[index] = torch.sunrise.mem_get_info(index)[0]
                memory.update(found)  # "cpu" (and "disk") after the devices
                return memory
            # A user-provided budget: the stock code does the same, but checks the
            # indices against torch.cuda.device_count() and warns for every one.
            for key in max_memory:  # in place, as the stock code (transformers relies on it)
                if isinstance(max_memory[key], str):
                    max_memory[key] = module.convert_file_size_to_int(max_memory[key])
            memory = max_memory
            indices = sorted(key for key in memory if isinstance(key, int))
            count = torch.sunrise.device_count()
            for index in indices:
                if not 0 <= index < count:
                    _logger.warning(f"Device {index} is not available, available devices are {list(range(count))}")
            names = indices + [key for key in ("mps", "cpu", "disk") if key in memory]
            for key in memory:
                if key not in names:
                    raise ValueError(
                        f"Device {key} is not recognized, available devices are integers(for GPU/XPU), "
                        "'mps', 'cpu' and 'disk'"
                    )
            return {key: memory[key] for key in names}

        return get_max_memory

    def make_get_grad_scaler(original: Callable) -> Callable:
        def get_grad_scaler(distributed_type: Any = None, **kwargs: Any) -> Any:
            device = _accelerate_state_device()
            if (
                device is not None
                and device.type == _BACKEND
                and str(distributed_type).split(".")[-1] != "FSDP"
            ):
                return torch.amp.GradScaler(_BACKEND, **kwargs)
            return original(distributed_type, **kwargs)

        return get_grad_scaler

    _patch_function(module, "get_max_memory", make_get_max_memory, "accelerate.utils.modeling.get_max_memory")
    _patch_function(module, "get_grad_scaler", make_get_grad_scaler, "accelerate.utils.modeling.get_grad_scaler")


def _is_fp16_device_tuple(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and all(isinstance(item, str) for item in value)
        and {"cuda", "xpu", "mps"} <= set(value)
        and _BACKEND not in value
    )


def _patch_accelerator(module: Any) -> None:
    # Accelerator.__init__ refuses fp16 unless `self.device.type` is in a literal
    # tuple ("xpu", "cuda", "npu", ...). The narrowest possible change is to add
    # "sunrise" to that constant; if a future accelerate no longer has it, nothing
    # is patched (and fp16 is refused as before).
    init = module.Accelerator.__init__
    code = init.__code__
    consts = tuple(item + (_BACKEND,) if _is_fp16_device_tuple(item) else item for item in code.co_consts)
    if consts == code.co_consts:
        return
    _set_attr(init, "__code__", code.replace(co_consts=consts), "accelerate.Accelerator.__init__ fp16 device tuple")


# --------------------------------------------------------------------------- transformers


def _patch_hub_kernels(module: Any) -> None:
    """transformers' ``kernels`` hub integration (with the ``kernels`` package installed; from 5.25
    ``from_pretrained`` kernelizes every model by default) passes the model's device *type* to
    ``kernels.kernelize`` as a string, and kernels checks device strings against a fixed list
    (cpu, cuda, mps, neuron, npu, rocm, tpu, xpu): ``ValueError: Unsupported device type 'sunrise'``.
    kernels also takes a ``torch.device`` (documented), which it does not check against that list:
    it selects kernels for ``Device(type="sunrise")``, finds none in the mapping and keeps each
    layer's torch forward (transformers asks for ``KernelizeFallback.ALL``), and would use a hub kernel
    built for sunrise if one were mapped. So the string "sunrise" becomes ``torch.device("sunrise")``
    at transformers' one call of ``kernels.kernelize``; every other call is passed on unchanged."""
    original = module.__dict__.get("_kernels_kernelize")  # absent without the kernels package
    if original is None or getattr(original, "__sunrise_patch__", False):
        return

    def _kernels_kernelize(model: Any, *args: Any, device: Any = None, **kwargs: Any) -> Any:
        device_type = _device_type(device)
        if isinstance(device, str) and device_type == _BACKEND:
            device = torch.device(device)
        elif device_type == "cuda" and _cuda_means_sunrise():
            # transfer_to_sunrise: the model's "cuda" is sunrise, for which no CUDA kernel is fetched
            device = torch.device(_BACKEND)
        return original(model, *args, device=device, **kwargs)

    _install(module, "_kernels_kernelize", _kernels_kernelize, original,
             "transformers hub_kernels kernels.kernelize device")


def _patch_transformers_import_utils(module: Any) -> None:
    def make(original: Callable) -> Callable:
        def is_torch_bf16_gpu_available() -> bool:
            if original():
                return True
            return _sunrise_is_accelerator() and torch.sunrise.is_bf16_supported()

        return is_torch_bf16_gpu_available

    _patch_function(module, "is_torch_bf16_gpu_available", make, "transformers is_torch_bf16_gpu_available")


def _cuda_means_sunrise() -> bool:
    """Whether torch_sunrise.transfer_to_sunrise is active in this process."""
    shim = sys.modules.get("torch_sunrise.transfer_to_sunrise")
    return bool(getattr(shim, "_applied", False))


def _patch_training_args(module: Any) -> None:
    cls = module.TrainingArguments
    original = cls.__dict__.get("_setup_devices")
    if not isinstance(original, functools.cached_property) or getattr(original.func, "__sunrise_patch__", False):
        return
    setup = original.func

    def _setup_devices(self: Any) -> torch.device:
        device = setup(self)
        state = getattr(self, "distributed_state", None)
        state_device = getattr(state, "device", None) if state is not None else None
        if (
            device.type == "cpu"
            and not self.use_cpu
            and state_device is not None
            and state_device.type == _BACKEND
            and str(state.distributed_type).split(".")[-1] == "NO"
        ):
            index = state_device.index if state_device.index is not None else 0
            device = torch.device(_BACKEND, index)
            torch.sunrise.set_device(device)
            self._n_gpu = 1  # one device per process, like xpu/npu (no nn.DataParallel)
        elif device.type == "cuda" and _cuda_means_sunrise():
            # transfer_to_sunrise: transformers took its CUDA branch, which counts every device
            # for nn.DataParallel; sunrise trains on one device per process, as without the shim.
            device = torch.device(_BACKEND, device.index if device.index is not None else 0)
            self._n_gpu = 1
        return device

    functools.update_wrapper(_setup_devices, setup)
    _setup_devices.__sunrise_patch__ = True  # type: ignore[attr-defined]
    patched = functools.cached_property(_setup_devices)
    patched.__set_name__(cls, "_setup_devices")
    _set_attr(cls, "_setup_devices", patched, "transformers.TrainingArguments._setup_devices")


def _patch_pipelines(module: Any) -> None:
    pipeline_cls = module.Pipeline
    init = pipeline_cls.__dict__["__init__"]
    if getattr(init, "__sunrise_patch__", False):
        return
    signature = inspect.signature(init)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return init(self, *args, **kwargs)
        device = bound.arguments.get("device")
        model = bound.arguments.get("model")
        if (
            (device is None or (isinstance(device, int) and not isinstance(device, bool) and device >= 0))
            and getattr(model, "hf_device_map", None) is None
            and _sunrise_is_accelerator()
        ):
            # The stock code turns an ordinal into "cuda:N" (or xpu, npu, ...) and
            # anything else into the CPU -- moving a model that is on sunrise to the CPU.
            bound.arguments["device"] = torch.device(_BACKEND, device or 0)
            return init(*bound.args, **bound.kwargs)
        return init(self, *args, **kwargs)

    _install(pipeline_cls, "__init__", __init__, init, "transformers.Pipeline.__init__ device")


def _patch_sentence_transformers(module: Any) -> None:
    def make(original: Callable) -> Callable:
        def get_device_name() -> str:
            name = original()
            if name == "cpu" and _sunrise_is_accelerator():
                return _BACKEND
            return name

        return get_device_name

    _patch_function(module, "get_device_name", make, "sentence_transformers get_device_name")


def _patch_peft_save_and_load(module: Any) -> None:
    """peft reads adapter weights with ``safetensors.torch.load_file(path, device=...)`` onto the
    device it is given or infers (peft >= 0.22 infers ``torch.accelerator``'s, sunrise); safetensors
    checks device strings against the devices it knows and refuses "sunrise" ("device sunrise is
    invalid"). For a sunrise device the weights are read on the CPU and moved, the portable spelling
    of the same load; other devices are passed on unchanged."""

    def make(original: Callable) -> Callable:
        def load_peft_weights(model_id: str, device: Any = None, *args: Any, **kwargs: Any) -> dict:
            target = device
            if target is None and callable(getattr(module, "infer_device", None)):
                target = module.infer_device()  # what the stock function would use
            if _device_type(target) != _BACKEND:
                return original(model_id, device, *args, **kwargs)
            weights = original(model_id, "cpu", *args, **kwargs)
            return {name: value.to(target) if isinstance(value, torch.Tensor) else value
                    for name, value in weights.items()}

        return load_peft_weights

    _patch_function(module, "load_peft_weights", make, "peft load_peft_weights onto sunrise")


def _patch_generation_utils(module: Any) -> None:
    mixin = module.GenerationMixin
    original = mixin.__dict__.get("_valid_auto_compile_criteria")
    if original is None or getattr(original, "__sunrise_patch__", False):
        return

    def _valid_auto_compile_criteria(self: Any, model_kwargs: dict, generation_config: Any) -> bool:
        if self.device.type != _BACKEND:
            return original(self, model_kwargs, generation_config)
        # transformers compiles the forward for a static cache on its own device list
        # (cuda, xpu, ...) or when the compile config says "all devices". generate()
        # works on its own copy of the generation config, so the flag stays in this call.
        from transformers.generation.configuration_utils import CompileConfig  # loaded with generate()

        created = generation_config.compile_config is None
        if created:
            generation_config.compile_config = CompileConfig()
        generation_config.compile_config._compile_all_devices = True
        try:
            return original(self, model_kwargs, generation_config)
        finally:
            if created:  # the default config later, and no "you have set compile_config" warning
                generation_config.compile_config = None

    _install(mixin, "_valid_auto_compile_criteria", _valid_auto_compile_criteria, original,
             "transformers GenerationMixin._valid_auto_compile_criteria")


def _patch_modeling_utils(module: Any) -> None:
    model_class = module.PreTrainedModel
    original = model_class.__dict__.get("get_compiled_call")
    if original is None or getattr(original, "__sunrise_patch__", False):
        return

    def get_compiled_call(self: Any, compile_config: Any) -> Callable:
        if self.device.type != _BACKEND:
            return original(self, compile_config)
        config = compile_config or self._default_compile_config()
        if config.backend == "inductor" and config.mode == "reduce-overhead":
            # "reduce-overhead" is Inductor's code replayed as graphs; torch 2.13 does that for
            # CUDA only, the sunrise_graphs backend does it on sunrise.
            from ..inductor.graphs_backend import sunrise_graphs

            config = copy.copy(config)
            config.backend = sunrise_graphs
            config.mode = None
        return original(self, config)

    _install(model_class, "get_compiled_call", get_compiled_call, original,
             "transformers PreTrainedModel.get_compiled_call")


# module name -> patcher, applied right after the module is imported
_PATCHERS: dict[str, Callable[[Any], None]] = {
    "accelerate.state": _patch_accelerate_state,
    "accelerate.utils.modeling": _patch_accelerate_modeling,
    "accelerate.accelerator": _patch_accelerator,
    "transformers.utils.import_utils": _patch_transformers_import_utils,
    "transformers.training_args": _patch_training_args,
    "transformers.pipelines.base": _patch_pipelines,
    "transformers.generation.utils": _patch_generation_utils,
    "transformers.modeling_utils": _patch_modeling_utils,
    "transformers.integrations.hub_kernels": _patch_hub_kernels,
    "sentence_transformers.util.environment": _patch_sentence_transformers,
    "peft.utils.save_and_load": _patch_peft_save_and_load,
}


def _on_import(name: str, module: Any) -> None:
    with _lock:
        _patched_modules.discard(name)  # a reload made new objects: patch them too
    _apply(name, module)


def _apply(name: str, module: Any) -> None:
    with _lock:
        if not _enabled or name in _patched_modules:
            return
        _patched_modules.add(name)
        try:
            _PATCHERS[name](module)
        except Exception as error:  # a library version we do not know: leave it stock
            _logger.warning(f"torch_sunrise: could not patch {name} for the sunrise device: {error!r}")


# --------------------------------------------------------------------------- API


def enable() -> None:
    """Apply the patches: now to the modules already imported, and to the others
    as soon as they are imported. Idempotent."""
    global _enabled, _hooked
    with _lock:
        _enabled = True
        first = not _hooked
        _hooked = True
    for name in _PATCHERS:
        if first:
            _import_hooks.on_import(name, functools.partial(_on_import, name))
        elif name in sys.modules:
            _apply(name, sys.modules[name])


def disable() -> None:
    """Stop patching, and restore every patched function to the original."""
    global _enabled
    with _lock:
        _enabled = False
        while _applied:
            owner, attr, original, _what = _applied.pop()
            setattr(owner, attr, original)
        _patched_modules.clear()


def is_enabled() -> bool:
    """Whether the integration is enabled (the hook installed)."""
    return _enabled


def applied_patches() -> list[str]:
    """What has been patched so far (modules not yet imported are not listed)."""
    with _lock:
        return [what for _owner, _attr, _original, what in _applied]


def _enable_on_import() -> None:
    """Called when torch_sunrise is imported: installs the hook unless
    ``SUNRISE_HF_INTEGRATION=0``. Imports nothing from HuggingFace."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return
    enable()
