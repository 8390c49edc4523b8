"""The lse space's Flax model (jax tier): it agrees with the latency lowering layer for layer and with the
exact sizes, its variables are named after the genome's ids, it trains a step, and ``inherit`` over two real
Flax variable sets copies exactly the layers a mutation left in place."""

from __future__ import annotations

import functools
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

import spaces
from genome.lse import BN_RELU, CONV, LINEAR, SKIP, Edge, LSEGenome, Vertex, make_genome, model_size, seed_genome
from latency import estimate
from nets.build import build_model, count_params, init_variables, model_stats
from nets.trace import trace_module

pytestmark = pytest.mark.jax

SPACE = spaces.get("lse")


def _grown(seed: int, steps: int) -> LSEGenome:
    rng = random.Random(seed)
    mutate = SPACE.build_mutation()
    g = seed_genome()
    for _ in range(steps):
        g = mutate(g, rng).genome  # type: ignore[assignment]
    return g


CASES = [("seed", seed_genome()), ("sampled", SPACE.sample(random.Random(4))), ("grown 30", _grown(1, 30)),
         ("grown 60", _grown(7, 60))]


def _abstract(model: object, size: int) -> dict[str, object]:
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),  # type: ignore[attr-defined]
                          jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))


@pytest.mark.parametrize(("label", "genome"), CASES, ids=[c[0] for c in CASES])
def test_lowering_tracing_and_sizes_agree(label: str, genome: LSEGenome) -> None:
    size = 16
    model = build_model(genome, num_classes=10)
    variables = _abstract(model, size)
    traced = trace_module(model, (size, size, 3), variables=variables, train=False)
    lowered = SPACE.graph(genome, input_size=size)
    assert [(x.kind, x.inputs, x.out_shape, x.kernel, x.stride) for x in traced.layers] == [
        (x.kind, x.inputs, x.out_shape, x.kernel, x.stride) for x in lowered.layers]
    assert traced.total_macs() == lowered.total_macs() and traced.total_params() == lowered.total_params()
    exact = model_size(genome, size, 10)
    # Batch norm on the image itself folds into no layer in either front end, so the IR may count fewer.
    assert count_params(variables) == exact.params >= lowered.total_params()
    stats = model_stats(genome, image_size=size)
    assert (stats.params, stats.mult_adds) == (exact.params, exact.mult_adds)
    assert estimate(traced).latency_ms == pytest.approx(estimate(lowered).latency_ms, rel=1e-9)


def test_variables_are_named_after_the_genomes_ids_and_a_step_trains() -> None:
    genome = _grown(3, 25)
    model = build_model(genome, num_classes=10)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 16, 16, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)
    want = {f"e{e.id}" for e in genome.convolutions()} | {"classifier"}
    want |= {f"v{v.id}_bn" for v in genome.vertices if v.activation == "bn_relu"}
    assert set(variables["params"]) == want
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (4, 10) and bool(jnp.all(jnp.isfinite(logits)))
    assert set(updates.get("batch_stats", {})) == {n for n in want if n.endswith("_bn")}


#: input -> conv 3x3 to 8 -> conv 3x3 to 8 -> conv 3x3/2 to 8, each with batch norm, a skip from the input.
PARENT = make_genome(
    (Vertex(0, LINEAR), Vertex(1, BN_RELU), Vertex(3, BN_RELU), Vertex(5, BN_RELU)),
    (Edge(2, 0, 1, CONV, (3, 3), 1, 8), Edge(4, 1, 3, CONV, (3, 3), 1, 8), Edge(6, 3, 5, CONV, (3, 3), 2, 8),
     Edge(7, 0, 5, SKIP)), 0.1)


@functools.lru_cache(maxsize=4)
def _state(genome: LSEGenome, seed: int) -> dict[str, object]:
    model = build_model(genome, num_classes=10)
    # The variables' structure is Flax's own (an abstract model.init); the values come from NumPy, which
    # spares a CPU the one compilation per initializer that an eager init costs.
    variables = init_variables(model, (1, 8, 8, 3), seed)
    return serialization.msgpack_restore(serialization.msgpack_serialize(serialization.to_state_dict(variables)))


def _leaves(tree: dict[str, object]) -> dict[tuple[str, ...], np.ndarray]:
    return {tuple(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("mutation", ["alter_channels", "insert_convolution", "remove_convolution", "identity",
                                      "reset_weights", "alter_learning_rate"])
def test_inherit_over_real_flax_variables_copies_the_unchanged_layers(mutation: str) -> None:
    assert SPACE.inherit is not None
    parent = PARENT
    op = SPACE.build_mutation({"type": mutation})
    result = op(parent, random.Random(5))
    child = result.genome
    assert isinstance(child, LSEGenome)
    parent_vars, fresh = _state(parent, 0), _state(child, 1)
    chosen, count = SPACE.inherit(parent, child, result.description, parent_vars, fresh)
    old, new, got = _leaves(parent_vars), _leaves(fresh), _leaves(chosen)
    assert set(got) == set(new) and all(got[k].shape == new[k].shape for k in new)
    copied = {k for k in got if k in old and old[k].shape == got[k].shape and np.array_equal(got[k], old[k])
              and not np.array_equal(got[k], new[k])}
    if mutation == "reset_weights":
        assert count == 0 and all(np.array_equal(got[k], new[k]) for k in new)
        return
    expected = {k for k in new if k in old and old[k].shape == new[k].shape}
    # Every leaf of an inherited layer (same scope, same shapes) is the parent's, the rest the child's own.
    layers = {k[:2] for k in expected if all(old.get(j) is not None and old[j].shape == new[j].shape
                                             for j in new if j[:2] == k[:2])}
    for k in new:
        source = old if k[:2] in layers else new
        assert np.array_equal(got[k], source[k]), k
    assert count == sum(got[k].size for k in got if k[0] == "params" and k[:2] in layers)
    if mutation in ("identity", "alter_learning_rate", "insert_convolution"):
        # Nothing the parent had changed shape (an inserted convolution keeps its input's channels).
        assert count == count_params(parent_vars)
    else:
        assert 0 < count < count_params(parent_vars)
    if mutation in ("identity", "alter_learning_rate"):
        assert copied == {k for k in new if not np.array_equal(old[k], new[k])}
