"""``torch.compile(backend="sunrise_graphs")``: Inductor's code, replayed as sunrise graphs.

PyTorch's ``mode="reduce-overhead"`` and its ``cudagraphs`` backend are CUDA's
alone in torch 2.13 (device checks, then ``torch.cuda`` calls throughout; on
sunrise Inductor skips them with "skipping cudagraphs due to multiple
devices"). This backend does the same job with the sunrise graph API: Inductor
compiles as usual, and each compiled forward, backward or inference graph is
wrapped so that, after one warm-up call, its work is captured into a
:class:`torch.sunrise.SunriseGraph` and every later call is one replay.

As with CUDA graphs: inputs that live at fixed addresses (parameters, buffers,
a static KV cache: what Dynamo marks static) are read in place; the others
are copied into the graph's own input tensors before each replay. Outputs are
returned as fresh tensors (the graph's own are overwritten by the next
replay). A call with inputs the graph cannot take (CPU tensors, symbolic
sizes) runs the compiled code without a graph; a static input that moved is
captured again. Registered as a ``torch_dynamo_backends`` entry point.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Sequence

import torch


class _GraphReplayer:
    """A boxed compiled graph function (list of inputs in, list of outputs
    out) that replays a sunrise graph of itself after ``warmup`` calls."""

    def __init__(self, compiled: Callable[[list], Any], static_input_idxs: Optional[Sequence[int]],
                 is_backward: bool = False, warmup: int = 1) -> None:
        # Inputs the graph writes (a KV cache's length, an optimizer state):
        # those copied into the graph's own inputs are copied back after a replay.
        self._mutated = frozenset(getattr(compiled, "mutated_input_idxs", None) or ())
        # An instance attribute: wrappers (torch._dynamo.disable) copy __dict__.
        self._boxed_call = True
        self._compiled = compiled
        # A backward graph's "static" inputs include the saved activations, which
        # are fresh tensors on every call here (outputs are returned as copies).
        self._static = frozenset(() if is_backward else (static_input_idxs or ()))
        self._failed = False  # a capture failed: run without a graph from then on
        self._warmup = warmup
        self._calls = 0
        self._graph: Optional[torch.sunrise.SunriseGraph] = None
        self._inputs: list[torch.Tensor] = []
        self._outputs: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        # Inductor and AOTAutograd read attributes of the compiled graph.
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            raise AttributeError(name)
        return getattr(compiled, name)

    def _run(self, args: list) -> Any:
        return self._compiled(list(args))

    @staticmethod
    def _graphable(args: list) -> bool:
        devices = {a.device for a in args if isinstance(a, torch.Tensor)}
        return (len(devices) == 1 and next(iter(devices)).type == "sunrise"
                and all(isinstance(a, torch.Tensor) for a in args))

    def _capture(self, args: list) -> bool:
        """Captures the compiled graph over ``args``; False (and no graph from now on) if it cannot be."""
        inputs = [
            a if i in self._static else torch.empty_strided(a.size(), a.stride(), dtype=a.dtype,
                                                             device=a.device).copy_(a)
            for i, a in enumerate(args)
        ]
        graph = torch.sunrise.SunriseGraph()
        try:
            with torch.sunrise.device(inputs[0].device), torch.sunrise.graph(graph):
                outputs = list(self._compiled(list(inputs)))
        except Exception as error:  # the code needs the host (a read of device data, ...)
            warnings.warn(f"sunrise_graphs: the compiled graph cannot be captured, it runs without graph "
                          f"replay: {error}")
            self._failed = True
            return False
        self._graph, self._inputs, self._outputs = graph, inputs, outputs
        return True

    def __call__(self, args: list) -> list:
        # Inside a capture of the caller's, the compiled code is simply captured too.
        if self._failed or not self._graphable(args) or torch.sunrise.is_current_stream_capturing():
            return self._run(args)
        if self._graph is None:
            self._calls += 1
            if self._calls <= self._warmup or not self._capture(args):
                return self._run(args)
        elif any(self._inputs[i].data_ptr() != args[i].data_ptr() for i in self._static):
            self._graph.reset()
            self._graph = None
            if not self._capture(args):
                return self._run(args)
        else:
            for i, (mine, given) in enumerate(zip(self._inputs, args)):
                if i not in self._static and mine.data_ptr() != given.data_ptr():
                    mine.copy_(given)
        with torch.sunrise.device(self._inputs[0].device):
            self._graph.replay()
        for i in self._mutated - self._static:
            if self._inputs[i].data_ptr() != args[i].data_ptr():
                args[i].copy_(self._inputs[i])
        return [o.clone() if isinstance(o, torch.Tensor) else o for o in self._outputs]


def sunrise_graphs(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any) -> Callable[..., Any]:
    """Dynamo backend: Inductor, with every compiled graph replayed as a sunrise graph.

    ``torch.compile`` passes ``mode``/``options`` here; they are ignored (the mode
    this backend stands for is "reduce-overhead").
    """
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    def inner_compile(graph: torch.fx.GraphModule, inputs: Sequence[Any], **inner_kwargs: Any) -> _GraphReplayer:
        return _GraphReplayer(compile_fx_inner(graph, inputs, **inner_kwargs), inner_kwargs.get("static_input_idxs"),
                              is_backward=bool(inner_kwargs.get("is_backward")))

    # AOTAutograd's cache would return Inductor's graphs without the wrapper.
    with torch._functorch.config.patch(enable_autograd_cache=False):
        return compile_fx(gm, example_inputs, inner_compile=inner_compile)
