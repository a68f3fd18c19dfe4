"""Schedule spaces: built from the instruction, plain-data points, repair, and numerics of random points.

Every random point of every workload below must apply and compile, and its output must match the unscheduled
kernel's (|Δ| ≤ 1e-3 + 1e-3·|ref|). The default point must issue exactly :func:`default_schedule`'s primitives.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import tvm_ffi

from schedules.default import default_schedule
from schedules.packed import pack_constant, packed_inputs
from schedules.space import DEFAULT_SCHEDULE, Point, ScheduleSpace, default_matches, space_for
from schedules.tvm_env import host_target, tvm
from schedules.workload import workload_from_op

POOL = {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}
WORKLOADS = {
    "conv": ("conv", [(1, 8, 10, 10), (16, 8, 3, 3), (16,)], {"pads": (1, 1, 1, 1)}, ("relu",)),
    "conv_s2": ("conv", [(1, 8, 11, 11), (16, 8, 3, 3)], {"strides": (2, 2)}, ()),
    "depthwise": ("conv", [(1, 16, 10, 10), (16, 1, 3, 3)], {"pads": (1, 1, 1, 1), "groups": 16}, ()),
    # stride-1 windows over rows of whole vectors: a tile of a few rows × one vector (default.schedule_window)
    "depthwise_rows": ("conv", [(1, 4, 12, 16), (4, 1, 3, 3), (4,)], {"pads": (1, 1, 1, 1), "groups": 4}, ("relu",)),
    "maxpool_s1_rows": ("maxpool", [(1, 2, 6, 8)], {"kernel": (3, 3), "pads": (1, 1, 1, 1)}, ()),
    "dense": ("dense", [(4, 64), (32, 64), (32,)], {}, ("relu",)),
    # 28 rows: 7 rows of one vector are 7 accumulators, 4 rows of two vectors are 8 (the tile takes two vectors)
    "dense_rows": ("dense", [(1, 28, 24), (32, 24), (32,)], {}, ()),
    "matmul": ("matmul", [(2, 12, 32), (2, 32, 24)], {}, ()),
    "maxpool": ("maxpool", [(1, 8, 12, 12)], dict(POOL, dilations=(1, 1)), ()),
    "avgpool": ("avgpool", [(1, 8, 11, 11)], dict(POOL, ceil_mode=1, count_include_pad=0), ()),
    "softmax": ("softmax", [(4, 40)], {"axis": 1}, ()),
    "global_avgpool": ("global_avgpool", [(1, 16, 7, 7)], {}, ()),
    "relu": ("relu", [(2, 8, 6, 6)], {}, ()),
    "transpose": ("transpose", [(2, 3, 40)], {"perm": (2, 0, 1)}, ()),
    # per-row stages over the last axis: the row-wise strategy (one parallel loop over rows, rfactor reductions)
    "softmax_rows": ("softmax", [(3, 2, 40)], {"axis": -1}, ()),
    "softmax_ragged_rows": ("softmax", [(3, 2, 44)], {"axis": -1}, ()),  # 44 = 5 vectors of 8 + a 4-lane tail
    "softmax_odd_rows": ("softmax", [(2, 3, 49)], {"axis": -1}, ()),  # 49 tokens: 7 partial results per row
    "layernorm": ("layernorm", [(2, 6, 24), (24,), (24,)], {"axis": -1, "epsilon": 1e-5}, ()),
    # blocked NCHW8c convs: weights already blocked (no re-layout), a 2-block × 4-column register tile
    "conv_nchwc": ("conv2d_nchwc", [(1, 2, 6, 8, 8), (4, 2, 3, 3, 8, 8), (4, 8)], {"pads": (1, 1, 1, 1)},
                   ("relu",)),
    "dwconv_nchwc": ("dwconv2d_nchwc", [(1, 2, 8, 8, 8), (2, 3, 3, 8), (2, 8)], {"pads": (1, 1, 1, 1)}, ("relu",)),
    # two column tiles of 8: the column loop and the lane loop stay out of the parallel one (fuse_last 2)
    "dwconv_nchwc_cols": ("dwconv2d_nchwc", [(1, 2, 4, 16, 8), (2, 3, 3, 8), (2, 8)], {"pads": (1, 1, 1, 1)},
                          ("relu",)),
    # 7 columns: no (blocks × columns) tile divides them, so the default tile is ragged (the last one partial)
    "conv_nchwc_7col": ("conv2d_nchwc", [(1, 2, 5, 7, 8), (4, 2, 3, 3, 8, 8), (4, 8)], {"pads": (1, 1, 1, 1)},
                        ("relu",)),
    "conv_nchwc_14col": ("conv2d_nchwc", [(1, 2, 3, 14, 8), (4, 2, 3, 3, 8, 8), (4, 8)], {"pads": (1, 1, 1, 1)},
                         ("relu",)),
    # a long activation (the fast exp polynomial) fused into the tile, its rows unrolled
    "conv_nchwc_sigmoid": ("conv2d_nchwc", [(1, 2, 6, 8, 8), (4, 2, 3, 3, 8, 8), (4, 8)], {"pads": (1, 1, 1, 1)},
                           ("sigmoid",)),
}
POINTS_PER_WORKLOAD = 2


def workload(name):
    op, shapes, attrs, epilogue = WORKLOADS[name]
    return workload_from_op(op, shapes, attrs, epilogue)


def run(mod, inputs, out_shape):
    """Compile ``mod`` and run it, packing the constants it expects packed (as the compiler does)."""
    lib = tvm.compile(mod, host_target())
    args = list(inputs)
    for param, dim, lanes in packed_inputs(mod["main"]):
        args[param] = pack_constant(args[param], dim, lanes)
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.full(out_shape, np.nan, "float32"), dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in args], out)
    return out.numpy()


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_default_point_issues_the_default_schedule(name):
    """The knobs' default point is today's default schedule. If default.py learns a new strategy this fails
    until the knobs learn it too; tuning stays safe meanwhile, as it then also measures DEFAULT_SCHEDULE."""
    w = workload(name)
    func, hint = w.lower()
    space = space_for(w)
    assert tvm_ffi.structural_equal(space.apply(func, space.default()).mod, default_schedule(func, hint).mod)
    assert default_matches(w)
    assert space.apply(func, DEFAULT_SCHEDULE, hint).mod.same_as(default_schedule(func, hint).mod) or \
        tvm_ffi.structural_equal(space.apply(func, DEFAULT_SCHEDULE, hint).mod, default_schedule(func, hint).mod)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_random_points_compile_and_match_the_reference(name):
    w = workload(name)
    func, _ = w.lower()
    space = space_for(w)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(t.shape).astype("float32") for t in w.input_types()]
    out_shape = w.output_type().shape
    want = run(tvm.IRModule({"main": func}), inputs, out_shape)
    prng = random.Random(hash(name) % 1000)
    points = [space.sample(prng) for _ in range(POINTS_PER_WORKLOAD - 1)]
    points.append(space.crossover(points[0], space.mutate(space.default(), prng, 3), prng))
    for p in points:
        got = run(space.apply(func, p).mod, inputs, out_shape)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=f"{w.name} {p}")


def test_space_comes_from_the_instruction():
    conv = space_for(workload("conv"))
    assert conv.kind == "reduction"
    assert conv.shape.spatial == (1, 16, 10, 10) and conv.shape.reduce == (8, 3, 3)
    assert conv.shape.producers == ("n0_Xp",) and conv.shape.epilogue == ("n0_Y", "n1_Y")
    assert {"s0", "s3", "r0", "r2", "order", "acc", "par", "vec", "unroll", "epi", "pad", "layout"} <= set(conv.knobs)
    assert space_for(workload("relu")).kind == "injective"
    # packing needs a compile-time constant: the same conv with a weight *input* has no layout knob
    op, shapes, attrs, epi = WORKLOADS["conv"]
    assert "layout" not in space_for(workload_from_op(op, shapes, attrs, epi, constant_weights=False)).knobs


@pytest.mark.parametrize("name", ["conv", "dense", "softmax", "transpose"])
def test_search_operators_give_valid_hashable_points(name):
    space: ScheduleSpace = space_for(workload(name))
    rng = random.Random(1)
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        for p in (a, space.mutate(a, rng), space.crossover(a, b, rng)):
            assert space.is_valid(p)
            assert Point.from_json(p.to_json()) == p and hash(p) == hash(Point.from_json(p.to_json()))


@pytest.mark.parametrize("op, shapes, attrs", [
    ("conv", [(1, 7, 13, 13), (13, 7, 3, 3), (13,)], {"pads": (1, 1, 1, 1)}),  # a prime count of channels
    ("matmul", [(7, 13), (13, 11)], {}),
])
def test_search_operators_give_valid_points_on_prime_extents(op, shapes, attrs):
    # repair's whole-tile fix could leave a packed layout with one lane, fixed only by a second repair: 6 % of
    # the points were invalid, and the point stored named another schedule than the one built
    space = space_for(workload_from_op(op, shapes, attrs))
    p = space.repair(space.default().replace(layout="packed", s1=(1, 4)) if op == "conv" else space.default())
    assert space.is_valid(p)
    rng = random.Random(1)
    for _ in range(150):
        a, b = space.sample(rng), space.sample(rng)
        assert all(space.is_valid(q) for q in (a, space.mutate(a, rng), space.crossover(a, b, rng)))


def test_repair_fixes_garbage():
    space = space_for(workload("conv"))
    rng = random.Random(2)
    for _ in range(200):
        junk = {k: rng.choice([0, 1, 3, 7, 1000, -5, "x", (5, 7), (64, 64), None]) for k in space.knobs}
        junk["not_a_knob"] = 1
        fixed = space.repair(Point.of(junk))
        assert space.is_valid(fixed) and set(fixed.as_dict()) == set(space.knobs)
    # a fused epilogue needs an accumulator; "inner" needs a mid loop
    p = space.repair(space.default().replace(acc="none", epi="fuse"))
    assert p["acc"] == "outer"
    assert space.repair(space.default().replace(acc="inner"))["acc"] == "outer"
    assert json.loads(space.default().to_json())["order"] == "MR"


def test_blocked_conv_tiles_several_output_channel_blocks():
    """NCHW[b]c weights: lanes on the lane axis with no packing, and a (blocks × columns) register tile."""
    from schedules.loops import VECTOR_LANES
    from schedules.packed import packed_tile

    space = space_for(workload("conv_nchwc"))
    sh = space.shape
    if VECTOR_LANES != 8:
        pytest.skip("the workload's blocks are 8 lanes wide")
    assert sh.packed[0] == len(sh.spatial) - 1 and sh.block_axis == 1 and sh.lanes_ready
    d = space.default()
    assert (d["s1"], d["s3"], d["s4"]) == ((1, 2), (1, 4), (1, 8))
    func, hint = workload("conv_nchwc").lower()
    assert packed_inputs(default_schedule(func, hint).mod["main"]) == []  # already blocked: nothing to re-lay out
    # 7 columns: no (blocks × columns) tile divides, so 2 blocks × 4 columns with a ragged last tile
    assert packed_tile((1, 4, 7, 7, 8), 4, (1, 3, 4), 1) == {4: 8, 1: 2, 3: 4}
    assert packed_tile((1, 4, 7, 14, 8), 4, (1, 3, 4), 1) == {4: 8, 1: 2, 3: 5}  # 5+5+4: one column wasted
    assert packed_tile((1, 4, 7, 2, 8), 4, (1, 3, 4), 1) == {4: 8, 1: 4, 3: 2}   # 2-column rows: 4 blocks
    assert packed_tile((1, 3, 7, 7, 8), 4, (1, 3, 4), 1) == {4: 8, 3: 7}  # odd block count: the plain row
    # unblocked weights (dense): rows of two vectors when they hold more accumulators than rows of one
    assert packed_tile((4, 196, 192), 2, (0, 1), None) == {2: 16, 1: 4}   # 4 × 2 vectors = 8 > 7 × 1
    assert packed_tile((4, 49, 240), 2, (0, 1), None) == {2: 8, 1: 7}     # 49 rows: no 2-vector row tile
    assert packed_tile((1, 64, 56, 56), 1, (2, 3), None) == {1: 8, 3: 8}  # 8 × 1 = 4 × 2: one vector
    assert packed_tile((1, 128, 28, 28), 1, (2, 3), None, reductions=3) == {1: 8, 3: 7}  # convs: one vector


def test_two_vector_dense_tiles_pack_their_weights_in_blocks_of_two_vectors():
    from schedules.loops import VECTOR_LANES

    w = workload("dense_rows")
    func, hint = w.lower()
    sch = default_schedule(func, hint)
    assert packed_inputs(sch.mod["main"]) == [(1, 0, 2 * VECTOR_LANES)]
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal(t.shape).astype("float32") for t in w.input_types()]
    want = run(tvm.IRModule({"main": func}), inputs, w.output_type().shape)
    np.testing.assert_allclose(run(sch.mod, inputs, w.output_type().shape), want, rtol=1e-4, atol=1e-4)


def test_ragged_register_tiles_compute_every_column():
    """A register-tile factor that does not divide its axis leaves a partial last tile; its predicate must keep
    every column computed and nothing written past the edge (the output starts as NaN in ``run``)."""
    for name, columns, tile in (("conv_nchwc_7col", 7, 4), ("conv_nchwc_14col", 14, 5)):
        w = workload(name)
        func, hint = w.lower()
        space = space_for(w)
        assert space.default()["s3"] == (1, tile) and w.output_type().shape[3] == columns
        rng = np.random.default_rng(1)
        inputs = [rng.standard_normal(t.shape).astype("float32") for t in w.input_types()]
        want = run(tvm.IRModule({"main": func}), inputs, w.output_type().shape)
        for sch in (default_schedule(func, hint), space.apply(func, space.default().replace(s3=(1, 3), unroll=2))):
            np.testing.assert_allclose(run(sch.mod, inputs, w.output_type().shape), want, rtol=1e-3, atol=1e-3)
    # on the vector axis a ragged factor is repaired to whole tiles (the lanes would not vectorize)
    plain = space_for(workload("conv"))
    assert (1, 3) in plain.knobs["s2"].choices and (1, 3) in plain.knobs["s3"].choices
    spatial = plain.default().replace(layout="plain")  # lanes on the columns (s3)
    assert plain.vector_axis(spatial) == 3
    assert plain.repair(spatial.replace(s3=(1, 3)))["s3"][1] in (1, 2, 5, 10)
    assert plain.repair(spatial.replace(s2=(1, 3)))["s2"] == (1, 3)


def test_stride_one_windows_get_a_row_tile_and_strided_ones_stay_light():
    """Depthwise convs and pools whose rows fill whole vectors and are read with stride 1 get a tile of a few rows ×
    one vector, the column loop outside the parallel one; the result matches the unscheduled kernel. Strided windows
    (a stride-2 pool) and rows that fill no whole vector keep the light schedule."""
    from schedules.default import WINDOW_ROWS
    from schedules.loops import VECTOR_LANES

    for name, rows in (("depthwise_rows", 4), ("maxpool_s1_rows", 2)):
        w = workload(name)
        func, hint = w.lower()
        assert rows in WINDOW_ROWS and space_for(w).shape.window == rows
        text = default_schedule(func, hint).mod.script()
        assert f"T.vectorized({VECTOR_LANES})" in text and f"T.unroll({rows})" in text
        rng = np.random.default_rng(3)
        inputs = [rng.standard_normal(t.shape).astype("float32") for t in w.input_types()]
        want = run(tvm.IRModule({"main": func}), inputs, w.output_type().shape)
        got = run(default_schedule(func, hint).mod, inputs, w.output_type().shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for name in ("maxpool", "depthwise"):  # stride 2; 10 columns
        assert space_for(workload(name)).shape.window == 0
        assert space_for(workload(name)).default()["vec"] == 0


@pytest.mark.parametrize("shapes, lanes, tail", [
    (((2, 4, 8), (2, 8, 36)), 16, "32, 36"),  # 4 rows × 2 vectors (8 accumulators), a 4-lane tail
    (((2, 14, 8), (2, 8, 20)), 8, "16, 20"),  # 7 rows × 1 vector (7 accumulators, more than 2 rows × 2)
    (((3, 7, 6), (3, 6, 9)), 8, None),        # a one-column tail, left scalar
])
def test_rows_that_fill_no_whole_vectors_split_into_whole_vectors_and_a_tail(shapes, lanes, tail):
    """A matmul whose output rows are not a multiple of the vector width runs whole vectors plus one tail (not a
    vector as wide as a divisor of the row); every column is computed once, as the unscheduled kernel does. The
    search space does not offer that partition yet, so the tuner measures the default schedule as a point of its
    own (``default_matches`` is False)."""
    from schedules.loops import VECTOR_LANES

    if VECTOR_LANES != 8:
        pytest.skip("the cases are sized for 8-lane vectors")
    w = workload_from_op("matmul", list(shapes), constant_weights=False)
    func, hint = w.lower()
    text = default_schedule(func, hint).mod.script()
    assert f"T.vectorized({lanes})" in text
    assert text.count("T.vectorized(") == (4 if tail else 2)  # init and update of each part
    assert tail is None or f"T.vectorized({tail})" in text
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal(t.shape).astype("float32") for t in w.input_types()]
    want = run(tvm.IRModule({"main": func}), inputs, w.output_type().shape)
    np.testing.assert_allclose(run(default_schedule(func, hint).mod, inputs, w.output_type().shape), want,
                               rtol=1e-4, atol=1e-4)
    assert not default_matches(w)


@pytest.mark.parametrize("op, shapes, block, fuse_last, parallel, apart", [
    # blocked depthwise: parallel over (batch, channel block, row); the column tiles and the lane axis inside
    ("dwconv2d_nchwc", [(1, 2, 16, 32, 8), (2, 3, 3, 8), (2, 8)], "n0_conv_update", 2, 2 * 16, [32 // 8, 1]),
    # NCHW 1×1 conv, weights packed by 8 output channels: parallel over (batch, channel tile, row)
    ("conv", [(1, 16, 8, 32), (32, 16, 1, 1), (32,)], "n0_conv_update", 0, 32 // 8 * 8, [32 // 8]),
])
def test_tiles_along_rows_keep_their_column_loop_out_of_the_parallel_loop(op, shapes, block, fuse_last, parallel,
                                                                         apart):
    """A register tile along output rows runs its column-tile loop (and a blocked layout's lane loop) inside the
    parallel loop, in the default schedule and in the space's default point. It matches the unscheduled kernel, and
    a point with every loop fused still compiles and matches."""
    w = workload_from_op(op, shapes, {"pads": (1, 1, 1, 1)} if op == "dwconv2d_nchwc" else {}, ("relu",))
    func, hint = w.lower()
    space = space_for(w)
    assert space.default()["fuse_last"] == fuse_last and default_matches(w)
    sch = default_schedule(func, hint)
    loops = sch.get_loops(sch.get_sblock(block))
    kinds = [tvm.tirx.ForKind(int(sch.get(lp).kind)) for lp in loops]
    extents = [int(sch.get(lp).extent) for lp in loops]
    assert kinds[0] == tvm.tirx.ForKind.PARALLEL and extents[0] == parallel, (kinds, extents)
    assert extents[1:1 + len(apart)] == apart and kinds[1] == tvm.tirx.ForKind.SERIAL, (kinds, extents)
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal(t.shape).astype("float32") for t in w.input_types()]
    want = run(tvm.IRModule({"main": func}), inputs, w.output_type().shape)
    for mod in (sch.mod, space.apply(func, space.default().replace(fuse_last=1)).mod):
        np.testing.assert_allclose(run(mod, inputs, w.output_type().shape), want, rtol=1e-4, atol=1e-4)


def test_fused_epilogue_rows_are_unrolled():
    """Each vector row of the tile carries a long dependent chain (sigmoid's exp): unrolled rows overlap."""
    w = workload("conv_nchwc_sigmoid")
    func, hint = w.lower()
    space = space_for(w)
    for sch, unrolled in ((default_schedule(func, hint), True), (space.apply(func, space.default()), True),
                          (space.apply(func, space.default().replace(unroll=0)), False)):
        out = sch.get_child_blocks(sch.get_sblock("root"))[-1]
        kinds = [tvm.tirx.ForKind(int(sch.get(lp).kind)) for lp in sch.get_loops(out)]
        assert kinds[-1] == tvm.tirx.ForKind.VECTORIZED, kinds
        assert (tvm.tirx.ForKind.UNROLLED in kinds[:-1]) == unrolled, kinds


@pytest.mark.parametrize("name", ["softmax_rows", "softmax_ragged_rows", "softmax_odd_rows", "layernorm"])
def test_row_wise_kernels_get_one_parallel_loop_over_rows(name):
    from schedules.loops import VECTOR_LANES

    w = workload(name)
    func, hint = w.lower()
    space = space_for(w)
    if not space.shape.rowwise and name == "softmax_ragged_rows":
        pytest.skip(f"rows of 44 fill no half vector of {VECTOR_LANES} lanes")
    assert space.shape.rowwise and space.default()["rows"] == "rowwise"
    text = default_schedule(func, hint).mod.script()
    assert text.count("T.parallel(") <= 1 and "_rf" in text  # reductions split into vector partial results
    if name == "softmax_ragged_rows":  # per-element stages: whole vectors, then the 4-element tail as one vector
        assert f"T.vectorized({VECTOR_LANES})" in text and "T.vectorized(4)" in text
    if name == "softmax_odd_rows" and VECTOR_LANES == 8:  # 7 partial results; 6 whole vectors and a 1-element tail
        assert "T.vectorized(7)" in text and "T.vectorized(8)" in text
    # the "tiled" alternative repairs to a real point of the ordinary space
    tiled = space.repair(space.default().replace(rows="tiled"))
    assert tiled["rows"] == "tiled" and space.is_valid(tiled)
    # numerics of the row-wise schedule against the unscheduled kernel
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(t.shape).astype("float32") for t in w.input_types()]
    want = run(tvm.IRModule({"main": func}), inputs, w.output_type().shape)
    got = run(default_schedule(func, hint).mod, inputs, w.output_type().shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_over_an_inner_axis_is_not_row_wise():
    w = workload_from_op("softmax", [(2, 5, 8)], {"axis": 1})
    assert not space_for(w).shape.rowwise


def test_register_tile_of_two_vector_rows_stays_within_the_accumulator_registers():
    """Rows of 16 lanes are two AVX2 vectors each: 8 of them would fill all 16 registers with accumulators."""
    from schedules.loops import VECTOR_LANES
    from schedules.tiled import ACC_REGISTERS

    w = workload_from_op("matmul", [(128, 128), (128, 128)], constant_weights=False)
    d = space_for(w).default()
    rows, lanes = d["s0"][1], d["s1"][1]
    assert lanes == 2 * VECTOR_LANES and rows * 2 <= ACC_REGISTERS and rows >= 4
    assert default_matches(w)


def test_epilogue_free_tiles_accumulate_in_the_output():
    """No epilogue and lanes along the output's last axis: no local accumulator to copy out after each tile.
    An epilogue reads a local one; lanes across a strided output axis (NCHW channels) need one to transpose."""
    for name, local in (("matmul", False), ("conv_nchwc", True), ("conv_s2", True)):
        w = workload(name)
        func, hint = w.lower()
        script = default_schedule(func, hint).mod.script()
        assert ('scope="local"' in script) == local, name
        assert (space_for(w).default()["acc"] == "none") != local, name
    # accumulating in the output, the 32-long reduction runs in unrolled steps of 8
    space = space_for(workload("matmul"))
    assert space.shape.reduce == (32,) and (space.default()["r0"], space.default()["unroll"]) == (8, 2)
    func, hint = workload("matmul").lower()
    sch = default_schedule(func, hint)
    update = next(b for b in sch.get_child_blocks(sch.get_sblock("root")) if "update" in sch.get(b).name_hint)
    loops = [sch.get(lp) for lp in sch.get_loops(update)]
    k_inner = next(lp for lp in loops if int(lp.extent) == 8 and lp.kind == tvm.tirx.ForKind.UNROLLED)
    assert k_inner is not None
