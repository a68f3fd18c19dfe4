"""The per-kernel profile: kernels timed alone (:func:`nacos.profile.profile`) and the same kernels timed inside
whole-model calls (:func:`nacos.profile.in_situ`). Only structure is asserted, never a time."""

from __future__ import annotations

import numpy as np

import nacos
from nacos.profile import in_situ, profile
from schedules.fusion import kernel_graph
from tests.conftest import conv_chain


def test_in_situ_times_every_kernel_of_the_profile_inside_the_model():
    # the graph the kernels are cut from, as bench/models_vs_runtimes.py does
    graph = kernel_graph(conv_chain(3, pool=True))
    alone = profile(graph, layout="nchw", number=2, repeat=2)
    compiled = nacos.compile(graph, layout="nchw")
    x = np.random.default_rng(1).standard_normal((1, 16, 12, 12)).astype("float32")
    situ = in_situ(compiled, x, rounds=3)
    assert set(situ.per_kernel) == {k.name for k in alone}  # the VM's kernel names are the profile's
    assert all(s > 0 for s in situ.per_kernel.values())
    assert situ.kernels == sum(situ.per_kernel.values()) and 0 < situ.kernels
    assert situ.whole > 0 and situ.instrumented > 0 and 0.0 <= situ.outside_kernels < 1.0
    assert set(situ.as_dict()) >= {"whole_ms", "kernels_ms", "builtins_ms", "outside_kernels_share"}
    # the hook stays on in_situ's own VM: the compiled model still runs and gives the same answer
    np.testing.assert_allclose(compiled(x)[0], nacos.compile(graph, layout="nchw")(x)[0], rtol=1e-6)
