"""Graph capture and replay: ``torch.sunrise.SunriseGraph``, ``graph``,
``make_graphed_callables``, ``graph_pool_handle``, mirroring ``torch.cuda``'s.

A capture records what the captured code enqueues on the device (kernels,
host tasks, copies) instead of running it; ``replay()`` then runs all of it
with one launch. As with CUDA graphs, a replay reads and writes the same
memory as the capture did: feed new inputs by copying them into the tensors
the capture read, and read results from the tensors it produced. Work that
needs the host during capture (``.item()``, the CPU fallback, outputs whose
size depends on the data) raises instead of being captured.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, Optional, Union

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .. import _C

_POOL_HANDLE = tuple[int, int]


def graph_pool_handle() -> _POOL_HANDLE:
    """An opaque token for a memory pool that several graphs may share.

    Pass it as ``pool`` to :class:`graph` (or ``capture_begin``) of graphs that
    are replayed in the order they were captured, so that they reuse memory.
    """
    return _C._graph_pool_handle()


def is_current_stream_capturing(device: Optional[Union[torch.device, str, int]] = None) -> bool:
    """True if the current stream of ``device`` (default: current) is capturing a graph."""
    from ._utils import _device_index

    return _C._is_current_stream_capturing(_device_index(device, optional=True))


class SunriseGraph(_C._SunriseGraph):
    """Wrapper around a sunrise graph (``torch.cuda.CUDAGraph``'s equivalent).

    Arguments:
        keep_graph: if False, the captured graph is instantiated by
            ``capture_end`` and only the executable graph is kept; if True,
            it is kept and instantiated by ``instantiate()`` or the first
            ``replay()``.
    """

    def __new__(cls, keep_graph: bool = False) -> "SunriseGraph":
        return super().__new__(cls, keep_graph)

    def capture_begin(self, pool: Optional[_POOL_HANDLE] = None, capture_error_mode: str = "global") -> None:
        """Begin capturing the current stream's work (prefer :class:`graph`).

        ``pool``: a :func:`graph_pool_handle` or another graph's ``pool()`` to
        share memory with. ``capture_error_mode``: "global", "thread_local" or
        "relaxed", as for ``torch.cuda.graph``.
        """
        super().capture_begin(pool=pool, capture_error_mode=capture_error_mode)

    def capture_end(self) -> None:
        """End the capture begun on the current stream."""
        super().capture_end()

    def instantiate(self) -> None:
        """Instantiate the kept graph (``keep_graph=True``)."""
        super().instantiate()

    def replay(self) -> None:
        """Run the captured work on the current stream."""
        super().replay()

    def reset(self) -> None:
        """Release the graph, its private memory and what it holds; it may capture again."""
        super().reset()

    def pool(self) -> _POOL_HANDLE:
        """The id of this graph's memory pool, for other captures to share."""
        return super().pool()

    def enable_debug_mode(self) -> None:
        """Keep the captured graph for :meth:`debug_dump`."""
        super().enable_debug_mode()

    def debug_dump(self, debug_path: str) -> None:
        """Write the captured graph (nodes and dependencies) as a Graphviz file."""
        super().debug_dump(debug_path)

    def register_generator_state(self, generator: torch.Generator) -> None:
        """Let random ops drawing from ``generator`` draw fresh numbers on every
        replay (the capturing device's default generator always does)."""
        super().register_generator_state(generator)


class graph:
    """Context manager that captures the work inside it into a :class:`SunriseGraph`.

    As ``torch.cuda.graph``: synchronizes and empties the cache first, then
    captures on ``stream`` (by default a side stream of the current device,
    shared by its captures),
    so that the captured work does not depend on work of the current stream.
    Run the code once before capturing (warm-up), as for CUDA graphs.

    Arguments:
        sunrise_graph: the graph to capture into.
        pool: a :func:`graph_pool_handle` or another graph's ``pool()``.
        stream: the stream to capture on.
        capture_error_mode: "global" (default), "thread_local" or "relaxed".
    """

    # One side stream per device: a capture runs on the current device's.
    default_capture_streams: dict[int, torch.Stream] = {}

    def __init__(
        self,
        sunrise_graph: SunriseGraph,
        pool: Optional[_POOL_HANDLE] = None,
        stream: Optional[torch.Stream] = None,
        capture_error_mode: str = "global",
    ) -> None:
        if stream is None:
            device = torch.sunrise.current_device()
            stream = self.default_capture_streams.get(device)
            if stream is None:
                stream = self.default_capture_streams[device] = torch.sunrise.Stream(device)
        self.pool = pool
        self.capture_stream = stream
        self.stream_ctx = torch.sunrise.stream(self.capture_stream)
        self.sunrise_graph = sunrise_graph
        self.capture_error_mode = capture_error_mode

    def __enter__(self) -> None:
        torch.sunrise.synchronize()
        if torch.compiler.config.force_cudagraph_gc:
            gc.collect()
        torch.sunrise.empty_cache()
        self.stream_ctx.__enter__()
        try:
            self.sunrise_graph.capture_begin(self.pool, capture_error_mode=self.capture_error_mode)
        except BaseException:
            self.stream_ctx.__exit__(None, None, None)
            raise

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.sunrise_graph.capture_end()
            else:
                # The body's error is the one to see; the capture it broke
                # (invalidated, or missing what did not run) is discarded.
                try:
                    self.sunrise_graph.capture_end()
                except Exception:
                    pass
                self.sunrise_graph.reset()
        finally:
            self.stream_ctx.__exit__(exc_type, exc, tb)


_ModuleOrCallable = Union[torch.nn.Module, Callable[..., Any]]


def make_graphed_callables(
    callables: Union[_ModuleOrCallable, tuple[_ModuleOrCallable, ...]],
    sample_args: Union[tuple[torch.Tensor, ...], tuple[tuple[torch.Tensor, ...], ...]],
    num_warmup_iters: int = 3,
    allow_unused_input: bool = False,
    pool: Optional[_POOL_HANDLE] = None,
) -> Union[_ModuleOrCallable, tuple[_ModuleOrCallable, ...]]:
    """Graphed versions of callables (functions or modules), as ``torch.cuda.make_graphed_callables``.

    Each callable's forward work, and the backward work of its outputs, are
    captured into two graphs and replayed inside one autograd node. The
    callables are warmed up ``num_warmup_iters`` times on a side stream first.
    ``sample_args`` give the arguments' shapes, dtypes and layout, which every
    later call must match; tensors that require grad in them get gradients.
    Several callables given as a tuple share one memory pool and must then be
    called in the order given (and their backwards in reverse order).
    """
    if torch.is_autocast_enabled("sunrise") and torch.is_autocast_cache_enabled():
        raise RuntimeError(
            "make_graphed_callables does not support the autocast caching. Please set `cache_enabled=False`."
        )
    just_one_callable = not isinstance(callables, tuple)
    if just_one_callable:
        callables = (callables,)
        sample_args = (sample_args,)

    flatten_sample_args = []
    for c, args in zip(callables, sample_args):
        if isinstance(c, torch.nn.Module):
            if len(c._backward_hooks) or len(c._forward_hooks) or len(c._forward_pre_hooks):
                raise AssertionError(
                    "Modules must not have hooks registered at the time they are passed; hooks would not run "
                    "inside the graph."
                )
            if any(b.requires_grad for b in c.buffers()):
                raise AssertionError("Modules' buffers must not require grad.")
        flat, _ = tree_flatten(args)
        if not all(isinstance(a, torch.Tensor) for a in flat):
            raise TypeError("In the beta API, sample_args for each callable must contain only Tensors.")
        flatten_sample_args.append(tuple(flat))

    # Inputs a graph reads: the arguments, then the module's parameters.
    per_callable_len_user_args = [len(a) for a in flatten_sample_args]
    per_callable_module_params = [
        tuple(c.parameters()) if isinstance(c, torch.nn.Module) else () for c in callables
    ]
    per_callable_static_input_surfaces = [
        flatten_sample_args[i] + per_callable_module_params[i] for i in range(len(callables))
    ]
    fwd_graphs = [SunriseGraph() for _ in callables]
    bwd_graphs = [SunriseGraph() for _ in callables]
    mempool = graph_pool_handle() if pool is None else pool

    def grad_buffers(outputs: tuple[torch.Tensor, ...]) -> tuple[Optional[torch.Tensor], ...]:
        """A gradient tensor for each output that requires grad (None for the others)."""
        return tuple(torch.empty_like(o) if o.requires_grad else None for o in outputs)

    def grad_inputs_of(outputs: tuple[torch.Tensor, ...], grad_outputs: tuple[Optional[torch.Tensor], ...],
                       inputs: tuple[torch.Tensor, ...]) -> tuple[Optional[torch.Tensor], ...]:
        """The gradients of the inputs that require grad; () when no output or no input does."""
        outputs_grad = tuple(o for o in outputs if o.requires_grad)
        needs_grad = tuple(i for i in inputs if i.requires_grad)
        if not outputs_grad or not needs_grad:
            return ()
        return torch.autograd.grad(
            outputs=outputs_grad,
            inputs=needs_grad,
            grad_outputs=tuple(g for g in grad_outputs if g is not None),
            only_inputs=True,
            allow_unused=allow_unused_input,
        )

    # Warm-up on a side stream, so that lazy initialization and first-call
    # checks happen outside the capture.
    torch.sunrise.synchronize()
    with torch.sunrise.stream(torch.sunrise.Stream()):
        for func, args, static_input_surface in zip(callables, sample_args, per_callable_static_input_surfaces):
            for _ in range(num_warmup_iters):
                flat, _ = tree_flatten(func(*args))
                outputs = tuple(o for o in flat if isinstance(o, torch.Tensor))
                grad_inputs_of(outputs, grad_buffers(outputs), static_input_surface)
                del flat, outputs
    torch.sunrise.synchronize()

    # Forwards in order, then backwards in reverse order, all in one pool.
    per_callable_static_outputs = []
    per_callable_output_unflatten_spec = []
    for func, args, fwd_graph in zip(callables, sample_args, fwd_graphs):
        with graph(fwd_graph, pool=mempool):
            outputs = func(*args)
        flat_outputs, spec = tree_flatten(outputs)
        per_callable_static_outputs.append(tuple(flat_outputs))
        per_callable_output_unflatten_spec.append(spec)

    per_callable_static_grad_outputs = []
    per_callable_static_grad_inputs = []
    for static_input_surface, static_outputs, bwd_graph in zip(
        reversed(per_callable_static_input_surfaces), reversed(per_callable_static_outputs), reversed(bwd_graphs)
    ):
        static_grad_outputs = grad_buffers(static_outputs)
        with graph(bwd_graph, pool=mempool):
            grad_inputs = grad_inputs_of(static_outputs, static_grad_outputs, static_input_surface)
        # One gradient (or None) per input of the static surface.
        grads = iter(grad_inputs)
        static_grad_inputs = tuple(next(grads) if i.requires_grad and grad_inputs else None
                                   for i in static_input_surface)
        per_callable_static_grad_outputs.append(static_grad_outputs)
        per_callable_static_grad_inputs.append(static_grad_inputs)
    per_callable_static_grad_outputs.reverse()
    per_callable_static_grad_inputs.reverse()

    def make_graphed_autograd_function(
        fwd_graph: SunriseGraph,
        bwd_graph: SunriseGraph,
        module_params: tuple[torch.nn.Parameter, ...],
        len_user_args: int,
        output_unflatten_spec: Any,
        static_input_surface: tuple[torch.Tensor, ...],
        static_outputs: tuple[torch.Tensor, ...],
        static_grad_outputs: tuple[Optional[torch.Tensor], ...],
        static_grad_inputs: tuple[Optional[torch.Tensor], ...],
    ) -> Callable[..., Any]:
        class Graphed(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
                for i in range(len_user_args):
                    if static_input_surface[i].data_ptr() != inputs[i].data_ptr():
                        static_input_surface[i].copy_(inputs[i])
                fwd_graph.replay()
                return tuple(o.detach() for o in static_outputs)

            @staticmethod
            @torch.autograd.function.once_differentiable
            def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
                for g, grad in zip(static_grad_outputs, grads):
                    if g is not None and g.data_ptr() != grad.data_ptr():
                        g.copy_(grad)
                bwd_graph.replay()
                return tuple(b.detach() if b is not None else b for b in static_grad_inputs)

        def functionalized(*user_args: Any) -> Any:
            flat_user_args, _ = tree_flatten(user_args)
            out = Graphed.apply(*(tuple(flat_user_args) + module_params))
            return tree_unflatten(list(out), output_unflatten_spec)

        return functionalized

    ret: list[_ModuleOrCallable] = []
    for i, func in enumerate(callables):
        graphed = make_graphed_autograd_function(
            fwd_graphs[i],
            bwd_graphs[i],
            per_callable_module_params[i],
            per_callable_len_user_args[i],
            per_callable_output_unflatten_spec[i],
            per_callable_static_input_surfaces[i],
            per_callable_static_outputs[i],
            per_callable_static_grad_outputs[i],
            per_callable_static_grad_inputs[i],
        )
        if isinstance(func, torch.nn.Module):

            def make_graphed_forward(
                func: torch.nn.Module, graph_training_state: bool, graphed: Callable[..., Any], orig_fwd: Callable[..., Any]
            ) -> Callable[..., Any]:
                def new_fwd(*user_args: Any) -> Any:
                    # The graph holds the training-mode work it captured.
                    if func.training == graph_training_state:
                        return graphed(*user_args)
                    return orig_fwd(*user_args)

                return new_fwd

            func.forward = make_graphed_forward(func, func.training, graphed, func.forward)
            ret.append(func)
        else:
            ret.append(graphed)
    if just_one_callable:
        return ret[0]
    return tuple(ret)


__all__ = ["SunriseGraph", "graph", "graph_pool_handle", "is_current_stream_capturing", "make_graphed_callables"]
