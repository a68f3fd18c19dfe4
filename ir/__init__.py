"""The shared tensor IR: frozen graphs whose operators are mathematical instructions."""

from ir.graph import CONSTANT, INPUT, Graph, GraphBuilder, Node, TensorType
from ir.instruction import Instruction, Stage, idiv, imod
from ir.registry import OpDef, UnsupportedOpError, all_ops, get_op, register_op
from ir.verify import IRError, verify

__all__ = ["CONSTANT", "INPUT", "Graph", "GraphBuilder", "Node", "TensorType", "Instruction", "Stage", "idiv",
           "imod", "OpDef", "UnsupportedOpError", "all_ops", "get_op", "register_op", "IRError", "verify"]
