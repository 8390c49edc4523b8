"""Flax models at tiny sizes: random NASNet genomes build and run, NB201 ops, bfloat16, scan, bad configs."""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spaces
from genome import NASNetSpace
from nets.build import ModelConfigError, build_model, init_variables
from nets.layers import conv_impl

pytestmark = pytest.mark.jax

# A cheap-to-compile cell pair (pools and identities, one separable conv) for the structure tests.
LIGHT = spaces.parse_genome({
    "space": "nasnet",
    "normal": {"combinations": [[[0, "sep_conv_3x3"], [1, "identity"]], [[2, "avg_pool_3x3"], [0, "max_pool_3x3"]],
                                [[1, "identity"], [3, "identity"]], [[2, "identity"], [0, "avg_pool_3x3"]],
                                [[4, "identity"], [5, "max_pool_3x3"]]]},
    "reduction": {"combinations": [[[0, "max_pool_3x3"], [1, "avg_pool_3x3"]], [[2, "identity"], [0, "identity"]],
                                   [[3, "max_pool_3x3"], [2, "identity"]], [[4, "identity"], [1, "max_pool_3x3"]],
                                   [[5, "avg_pool_3x3"], [3, "identity"]]],
                  # an input state in a reduction cell's output must itself be reduced first
                  "extra_outputs": [1]},
})


def _train_forward(model, shape=(2, 8, 8, 3), seed=0):
    # Structure tests: XLA's convolution (one op) compiles fastest; nets.fastconv is tested on its own.
    variables = init_variables(model, shape, seed)
    x = jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)
    with conv_impl("xla"):
        logits, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    return variables, logits, updates


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_random_nasnet_genomes_build_and_run(seed: int) -> None:
    genome = NASNetSpace().sample(random.Random(seed))
    model = build_model(genome, cells=1, filters=4, num_classes=7)
    variables, logits, updates = _train_forward(model)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    # Training mode updates the running statistics of every batch norm.
    assert jax.tree_util.tree_structure(updates["batch_stats"]) == jax.tree_util.tree_structure(variables["batch_stats"])


def _jaxpr_size(cells: int) -> int:
    model = build_model(LIGHT, cells=cells, filters=4, num_classes=10)
    variables = jax.eval_shape(lambda: init_variables(model, (2, 8, 8, 3)))
    with conv_impl("xla"):
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
            variables, jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32))
    return len(jaxpr.jaxpr.eqns)


def test_traced_program_does_not_grow_with_the_number_of_cells() -> None:
    # Compile time follows the traced program's size; cells 3..N are one scan, so N = 3 and N = 6 match.
    assert _jaxpr_size(3) == _jaxpr_size(6)


def test_scanned_and_unrolled_cells_compute_the_same_function() -> None:
    genome = LIGHT
    scanned = build_model(genome, cells=3, filters=4, num_classes=5)
    unrolled = build_model(genome, cells=3, filters=4, num_classes=5, scan=False)
    variables = init_variables(scanned, (2, 8, 8, 3), seed=1)
    params = variables["params"]
    # Submodules are named after their place; cells 3..N of a stack are one scanned body whose
    # parameters are stacked on a leading axis of N - 2.
    assert {"stem_conv", "stack1_cell1", "stack1_cell2", "stack1_cells3to3", "reduction1", "reduction2",
            "stack3_cells3to3", "classifier"} <= set(params)
    assert "comb0_left_sep_conv_3x3" in params["stack1_cell2"]
    assert "out1_reduce" in params["reduction1"] and "out1_reduce" not in params["stack1_cell1"]
    assert params["stack2_cells3to3"]["comb0_left_sep_conv_3x3"]["sep1"]["pointwise"]["kernel"].shape == (1, 1, 1, 8, 8)

    def unstack(tree):
        out = {}
        for name, sub in tree.items():
            if "_cells3to3" in name:
                out[name.replace("_cells3to3", "_cell3")] = jax.tree_util.tree_map(lambda a: a[0], sub)
            else:
                out[name] = sub
        return out

    flat = {k: unstack(v) for k, v in variables.items()}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), jnp.float32)
    with conv_impl("xla"):
        a = jax.jit(lambda v, x: scanned.apply(v, x, train=False))(variables, x)
        b = jax.jit(lambda v, x: unrolled.apply(v, x, train=False))(flat, x)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_nb201_runs_every_op_and_a_disconnected_cell() -> None:
    genome = spaces.parse_genome("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    model = build_model(genome, cells=1, filters=4, num_classes=10)
    _, logits, _ = _train_forward(model)
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
    # Node 3 reads node 1 and 2 only through `none`, and node 0 through `none`: the cell outputs zeros.
    cut = spaces.parse_genome("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|none~1|none~2|")
    model = build_model(cut, cells=1, filters=4, num_classes=10)
    _, logits, _ = _train_forward(model)
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
    np.testing.assert_allclose(np.asarray(logits[0]), np.asarray(logits[1]), atol=1e-6)


def test_bfloat16_compute_keeps_float32_params() -> None:
    model = build_model(LIGHT, cells=1, filters=4, num_classes=10, dtype=jnp.bfloat16)
    variables = init_variables(model, (2, 8, 8, 3))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    with conv_impl("xla"):
        traced = jax.jit(lambda v, x: model.apply(v, x, train=False)).trace(variables, jnp.ones((2, 8, 8, 3)))
    convs = [e for e in traced.jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert convs and all(e.outvars[0].aval.dtype == jnp.bfloat16 for e in convs)
    logits = traced.lower().compile()(variables, jnp.ones((2, 8, 8, 3)))
    assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))


def test_imagenet_stem_runs_at_a_small_resolution() -> None:
    model = build_model(LIGHT, cells=1, filters=8, num_classes=3, dataset="imagenet")
    _, logits, _ = _train_forward(model, shape=(1, 33, 33, 3))
    assert logits.shape == (1, 3) and bool(jnp.all(jnp.isfinite(logits)))


def _shapes(model) -> object:
    return jax.tree_util.tree_map(lambda a: a.shape, jax.eval_shape(lambda: init_variables(model, (1, 8, 8, 3))))


def test_the_network_defaults_to_the_space_standard_one() -> None:
    # The space builds its model (spaces.Space.model) from its standard network updated by the given keys.
    import nets.nasnet
    import nets.nb201

    assert spaces.get("nasnet").load_model() is nets.nasnet.build
    assert spaces.get("nb201").load_model() is nets.nb201.build
    standard = _shapes(build_model(LIGHT, num_classes=10))
    assert standard == _shapes(build_model(LIGHT, {"cells": 3, "filters": 24}, num_classes=10))
    assert standard == _shapes(build_model(LIGHT, cells=3, filters=24, num_classes=10))
    assert standard != _shapes(build_model(LIGHT, cells=3, filters=8, num_classes=10))
    cell = spaces.parse_genome("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    assert _shapes(build_model(cell, num_classes=10)) == _shapes(build_model(cell, {"cells": 5, "filters": 16},
                                                                             num_classes=10))


@pytest.mark.parametrize(
    "kwargs",
    [{"cells": 0}, {"filters": 0}, {"num_classes": 0}, {"dataset": "mnist"}, {"dropout": 1.0},
     {"dataset": "imagenet", "filters": 2}],
)
def test_bad_configurations_are_rejected(kwargs) -> None:
    base = {"cells": 1, "filters": 4, "num_classes": 10} | kwargs
    with pytest.raises(ModelConfigError):
        build_model(spaces.named_genome("nasnet-a"), **base)
