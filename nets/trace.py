"""Tracing front end: any Flax module or JAX function, through its jaxpr, into the latency IR.

Convolutions (``conv_general_dilated``: regular, depthwise by ``feature_group_count``, pointwise
1x1), dense layers (``dot_general``), pools (``reduce_window*``), spatial means, adds, products,
concatenation, padding and slicing become layers. Everything computed from parameters and
constants alone folds away, and an elementwise op between an activation and a constant (batch
norm, biases, ReLU/ReLU6 clipping, scaling) folds into the layer that produced the activation, as
the Edge TPU compiler folds BN and fuses activations; the folded parameters are counted on that
layer. Reshapes, broadcasts and dtype conversions are free. Any other primitive applied to an
activation becomes an ``unsupported`` layer, which the simulator runs on the host CPU. Call-like
primitives (``jit``/``pjit``, ``custom_jvp_call``, ``custom_vjp_call``, remat) are walked into.

Tracing is abstract (``jax.make_jaxpr`` on shapes, ``jax.eval_shape`` for initialization), so even
Inception v4 is traced in about a second without allocating its weights. Models are traced with
batch 1 and the batch dimension is dropped from the IR's shapes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from domain.errors import AmoebaError
from latency import LatencyReport, estimate
from latency.ir import (
    ACTIVATION,
    ADD,
    AVG_POOL,
    CONCAT,
    CONV,
    DENSE,
    DEPTHWISE,
    GRAPH_INPUT,
    MAX_POOL,
    MEAN,
    MUL,
    PAD,
    POINTWISE,
    SLICE,
    UNSUPPORTED,
    Graph,
    GraphBuilder,
    Layer,
)


class TraceError(AmoebaError, ValueError):
    """The function cannot be traced (bad input shape, or it fails under abstract evaluation)."""


@dataclass(frozen=True, slots=True)
class _Act:
    """An activation: data derived from the network input, produced by layer ``owner``."""

    owner: int
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Const:
    """Derived from parameters and constants only; ``leaves`` are the parameter leaves it reads."""

    leaves: frozenset[int]


_Val = _Act | _Const
_NO_LEAVES = _Const(frozenset())

_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_PASS_THROUGH = {"convert_element_type", "copy", "copy_p", "reduce_precision", "stop_gradient", "neg",
                 "optimization_barrier", "reshape", "squeeze", "expand_dims", "broadcast_in_dim", "sharding_constraint"}
_FOLDABLE = {"add", "add_any", "sub", "mul", "div", "max", "min", "pow", "clamp"}
_ACTIVATIONS = {"logistic", "tanh"}


def _drop_batch(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    return shape[1:] if len(shape) >= 2 and shape[0] == 1 else shape


class _Tracer:
    def __init__(self, name: str, input_shape: tuple[int, ...], leaf_sizes: dict[int, int]) -> None:
        self.b = GraphBuilder(name, input_shape)
        self.leaf_sizes = leaf_sizes
        self.attributed: set[int] = set()

    # -- parameter attribution -------------------------------------------------------------------
    def take(self, const: _Const) -> int:
        fresh = [leaf for leaf in const.leaves if leaf not in self.attributed]
        self.attributed.update(fresh)
        return sum(self.leaf_sizes.get(leaf, 0) for leaf in fresh)

    def layer(self, stack: str, kind: str, acts: Sequence[_Act], out_shape: tuple[int, ...], **fields: Any) -> _Act:
        name = f"{stack}/{kind}{len(self.b.layers)}" if stack else f"{kind}{len(self.b.layers)}"
        ref = self.b.add(Layer(name, kind, tuple(a.owner for a in acts), tuple(a.shape for a in acts), out_shape,
                               **fields))
        return _Act(ref, out_shape)

    # -- the walk ----------------------------------------------------------------------------------
    def run(self, jaxpr: Any, consts: Sequence[Any], args: Sequence[_Val], stack: str) -> list[_Val]:
        env: dict[Any, _Val] = {}
        for var in jaxpr.constvars:
            env[var] = _NO_LEAVES
        del consts
        for var, val in zip(jaxpr.invars, args, strict=True):
            env[var] = val

        def read(atom: Any) -> _Val:
            if isinstance(atom, jcore.Literal):
                return _NO_LEAVES
            return env.get(atom, _NO_LEAVES)

        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            inner_stack = "/".join(s for s in (stack, str(eqn.source_info.name_stack)) if s)
            outs = self.eqn(eqn, ins, inner_stack)
            for var, val in zip(eqn.outvars, outs, strict=True):
                env[var] = val
        return [read(v) for v in jaxpr.outvars]

    def eqn(self, eqn: Any, ins: list[_Val], stack: str) -> list[_Val]:
        prim = eqn.primitive.name
        outs_avals = [v.aval for v in eqn.outvars]
        acts = [v for v in ins if isinstance(v, _Act)]
        if prim == "scan":
            return self.scan(eqn, ins, stack)
        sub = next((eqn.params[p] for p in _CALL_PARAMS if p in eqn.params), None)
        if sub is not None and (hasattr(sub, "eqns") or hasattr(sub, "jaxpr")):
            inner = sub.jaxpr if hasattr(sub, "jaxpr") else sub
            consts = getattr(sub, "consts", ())
            n = len(inner.invars)
            return self.run(inner, consts, ins[len(ins) - n:], stack)
        if not acts:
            leaves = frozenset().union(*(v.leaves for v in ins if isinstance(v, _Const)))
            return [_Const(leaves) for _ in outs_avals]
        out_shape = _drop_batch(outs_avals[0].shape)
        if prim in _PASS_THROUGH:
            return [_Act(acts[0].owner, out_shape)]
        if prim == "conv_general_dilated":
            return [self.conv(eqn, ins, out_shape, stack)]
        if prim == "dot_general":
            return [self.dot(eqn, ins, out_shape, stack)]
        if prim in _FOLDABLE and len(acts) == 1:
            # Activation op constant: batch norm, bias, ReLU/ReLU6 clipping, scaling fold into the producer.
            extra = sum(self.take(v) for v in ins if isinstance(v, _Const))
            self.b.bump_params(acts[0].owner, extra)
            return [_Act(acts[0].owner, out_shape)]
        if prim in ("add", "add_any", "sub") and len(acts) == 2:
            return [self.layer(stack, ADD, acts, out_shape)]
        if prim == "mul" and len(acts) == 2:
            return [self.layer(stack, MUL, acts, out_shape)]
        if prim in ("reduce_window_sum", "reduce_window_max", "reduce_window") and len(acts) == 1:
            kind = MAX_POOL if prim == "reduce_window_max" else AVG_POOL
            window = tuple(eqn.params["window_dimensions"])
            strides = tuple(eqn.params["window_strides"])
            return [self.layer(stack, kind, acts, out_shape, kernel=(window[1], window[2]) if len(window) == 4 else (1, 1),
                               stride=(strides[1], strides[2]) if len(strides) == 4 else (1, 1))]
        if prim == "reduce_sum" and len(acts) == 1:
            return [self.layer(stack, MEAN, acts, out_shape)]
        if prim == "concatenate":
            if len(acts) == 1 and len(ins) == 1:
                return [_Act(acts[0].owner, out_shape)]
            return [self.layer(stack, CONCAT, acts, out_shape)]
        if prim == "pad" and isinstance(ins[0], _Act):
            return [self.layer(stack, PAD, acts, out_shape)]
        if prim == "slice":
            return [self.layer(stack, SLICE, acts, out_shape)]
        if prim in _ACTIVATIONS:
            return [self.layer(stack, ACTIVATION, acts, out_shape)]
        unsupported = self.layer(stack, UNSUPPORTED, acts, out_shape, op=prim)
        return [_Act(unsupported.owner, _drop_batch(a.shape)) for a in outs_avals]

    def scan(self, eqn: Any, ins: list[_Val], stack: str) -> list[_Val]:
        """Unroll a scan (e.g. ``nn.scan`` over repeated cells): the body runs ``length`` times on the
        carry; scanned-over parameters stay the same constants, so each leaf is counted once."""
        body = eqn.params["jaxpr"]
        n_consts, n_carry = eqn.params["num_consts"], eqn.params["num_carry"]
        consts, carry, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], ins[n_consts + n_carry:]
        xs_in = [v if isinstance(v, _Const) else _Act(v.owner, v.shape[1:]) for v in xs]
        ys: list[_Val] = []
        for i in range(int(eqn.params["length"])):
            outs = self.run(body.jaxpr, body.consts, [*consts, *carry, *xs_in], f"{stack}/iter{i}" if stack else f"iter{i}")
            carry, ys = outs[:n_carry], outs[n_carry:]
        # Stacked per-iteration outputs: only the last iteration's producer is tracked.
        stacked = [v if isinstance(v, _Const) else _Act(v.owner, _drop_batch(a.aval.shape))
                   for v, a in zip(ys, eqn.outvars[n_carry:], strict=True)]
        return [*carry, *stacked]

    def conv(self, eqn: Any, ins: list[_Val], out_shape: tuple[int, ...], stack: str) -> _Val:
        lhs, rhs = ins
        if not isinstance(lhs, _Act) or not isinstance(rhs, _Const):
            # Weights computed from the input (dynamic filters) do not map onto the chip.
            acts = [v for v in ins if isinstance(v, _Act)]
            return self.layer(stack, UNSUPPORTED, acts, out_shape, op="conv_general_dilated(dynamic)")
        dn = eqn.params["dimension_numbers"]
        lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
        rhs_shape = eqn.invars[1].aval.shape
        out_full = eqn.outvars[0].aval.shape
        groups = int(eqn.params["feature_group_count"])
        kernel = tuple(int(rhs_shape[d]) for d in rhs_spec[2:])
        cin_g = int(rhs_shape[rhs_spec[1]])
        cout = int(out_full[out_spec[1]])
        spatial_out = math.prod(int(out_full[d]) for d in out_spec[2:])
        cin = int(eqn.invars[0].aval.shape[lhs_spec[1]])
        weights = math.prod(int(d) for d in rhs_shape)
        macs = spatial_out * cout * math.prod(kernel) * cin_g
        if groups > 1 and groups == cin:
            kind = DEPTHWISE
        elif kernel == (1, 1) and groups == 1:
            kind = POINTWISE
        else:
            kind = CONV
        k2 = (*kernel, 1, 1)[:2]
        strides = (*eqn.params["window_strides"], 1, 1)
        dil = (*eqn.params["rhs_dilation"], 1, 1)
        act = self.layer(stack, kind, [lhs], out_shape, kernel=(k2[0], k2[1]), stride=(strides[0], strides[1]),
                         dilation=(dil[0], dil[1]), groups=groups, weights=weights, macs=macs)
        self.b.bump_params(act.owner, self.take(rhs))
        return act

    def dot(self, eqn: Any, ins: list[_Val], out_shape: tuple[int, ...], stack: str) -> _Val:
        (lc, _rc), _batch = eqn.params["dimension_numbers"]
        lhs, rhs = ins
        lshape, rshape = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
        contracted = math.prod(int(lshape[d]) for d in lc)
        macs = math.prod(int(d) for d in eqn.outvars[0].aval.shape) * contracted
        if isinstance(lhs, _Act) and isinstance(rhs, _Const):
            act, const, wshape = lhs, rhs, rshape
        elif isinstance(rhs, _Act) and isinstance(lhs, _Const):
            act, const, wshape = rhs, lhs, lshape
        else:
            return self.layer(stack, UNSUPPORTED, [v for v in ins if isinstance(v, _Act)], out_shape, op="dot_general",
                              macs=macs)
        weights = math.prod(int(d) for d in wshape)
        out = self.layer(stack, DENSE, [act], out_shape, weights=weights, macs=macs)
        self.b.bump_params(out.owner, self.take(const))
        return out


@contextlib.contextmanager
def _xla_convolutions() -> Iterator[None]:
    # nets.fastconv rewrites convolutions as matmuls on the CPU for training speed; the simulator must
    # see the convolutions themselves, so trace with XLA's convolution primitive.
    old = os.environ.get("AMOEBA_CONV_IMPL")
    os.environ["AMOEBA_CONV_IMPL"] = "xla"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("AMOEBA_CONV_IMPL", None)
        else:
            os.environ["AMOEBA_CONV_IMPL"] = old


def _spec(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(x.shape), getattr(x, "dtype", jnp.float32))


def trace_function(fn: Callable[..., Any], params: Any, input_shape: Sequence[int], *, name: str = "function") -> Graph:
    """Trace ``fn(params, x)`` for one input of ``input_shape`` (with the batch dimension, e.g. (1, 224, 224, 3)).

    ``params`` is any pytree (arrays or ``jax.ShapeDtypeStruct``); its leaves count as parameters
    except those under a top-level ``batch_stats`` key (statistics fold into the layers as well).
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise TraceError(f"input shape must be positive, got {shape}")
    leaves_with_path = jax.tree_util.tree_flatten_with_path(params)[0]
    leaf_sizes: dict[int, int] = {}
    for i, (path, leaf) in enumerate(leaves_with_path):
        top = getattr(path[0], "key", None) if path else None
        if top not in ("batch_stats", "cache", "intermediates"):
            leaf_sizes[i] = math.prod(int(d) for d in leaf.shape)
    param_specs = jax.tree_util.tree_map(_spec, params)
    x_spec = jax.ShapeDtypeStruct(shape, jnp.float32)
    with _xla_convolutions():
        try:
            closed = jax.make_jaxpr(fn)(param_specs, x_spec)
        except Exception as exc:  # any tracing failure is the user's function failing
            raise TraceError(f"cannot trace {name}: {type(exc).__name__}: {exc}") from exc
    tracer = _Tracer(name, _drop_batch(shape), leaf_sizes)
    n_params = len(leaves_with_path)
    args: list[_Val] = [_Const(frozenset({i})) for i in range(n_params)] + [_Act(GRAPH_INPUT, _drop_batch(shape))]
    outs = tracer.run(closed.jaxpr, closed.consts, args, "")
    if not tracer.b.layers:
        raise TraceError(f"{name}: no layer depends on the input")
    acts = [o for o in outs if isinstance(o, _Act)]
    # One output: keep what it depends on (the compiler drops dead layers). Several or none: keep all.
    return tracer.b.build(acts[0].owner if len(acts) == 1 else None)


def trace_module(module: Any, input_shape: Sequence[int], *, variables: Any = None, name: str | None = None,
                 **apply_kwargs: Any) -> Graph:
    """Trace a Flax module applied to one input of ``input_shape`` ((H, W, C) or with batch 1).

    ``variables`` default to ``module.init``'s, evaluated abstractly (no weights are allocated);
    ``apply_kwargs`` (e.g. ``train=False``) go to both ``init`` and ``apply``.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    label = name or type(module).__name__
    if variables is None:
        x_spec = jax.ShapeDtypeStruct(shape, jnp.float32)
        with _xla_convolutions():
            try:
                variables = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, **apply_kwargs), x_spec)
            except Exception as exc:
                raise TraceError(f"cannot initialize {label}: {type(exc).__name__}: {exc}") from exc
    return trace_function(lambda v, x: module.apply(v, x, **apply_kwargs), variables, shape, name=label)


def estimate_module(module: Any, input_shape: Sequence[int], *, device: str = "usb3", clock_mhz: int | None = None,
                    variables: Any = None, **apply_kwargs: Any) -> LatencyReport:
    """Simulated Edge TPU latency of a Flax module: ``trace_module`` then ``latency.estimate``."""
    graph = trace_module(module, input_shape, variables=variables, **apply_kwargs)
    return estimate(graph, device=device, clock_mhz=clock_mhz)
