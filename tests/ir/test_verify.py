"""The IR checker: each rule it states is enforced with an error that names the offending node."""

from __future__ import annotations

import numpy as np
import pytest

from ir.graph import GraphBuilder
from ir.verify import IRError, verify


def _graph():
    b = GraphBuilder("g")
    x = b.input("x", (1, 4))
    y = b.op("relu", b.op("add", x, b.constant(np.ones((1, 4), np.float32), "one")))
    return b.build([y])


def test_a_well_formed_graph_verifies():
    g = _graph()
    assert verify(g, check_instructions=True) is g


def test_an_input_listed_twice_is_refused():
    import dataclasses

    g = _graph()
    with pytest.raises(IRError, match="more than once"):
        verify(dataclasses.replace(g, inputs=("x", "x")))


def test_a_wrong_declared_type_names_the_node():
    import dataclasses

    from ir.graph import TensorType

    g = _graph()
    bad = [dataclasses.replace(n, type=TensorType((1, 5), "float32")) if n.op == "relu" else n for n in g.nodes]
    with pytest.raises(IRError, match="relu.*declared type"):
        verify(g.with_nodes(tuple(bad)))


def test_outputs_must_exist():
    g = _graph()
    with pytest.raises(IRError, match="not a node"):
        verify(g.with_nodes(g.nodes, outputs=("nope",)))
