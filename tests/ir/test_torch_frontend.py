"""PyTorch → IR importer (torch.export): zoo models and an op mix, compared with the original module through
``ir.exporters.to_torch`` (the ops' PyTorch references, no TVM), and one-line errors for unsupported ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ir import verify
from ir.exporters import to_torch
from ir.frontends import ModelImportError, from_torch
from nacos import zoo

torch.set_num_threads(1)
RTOL = ATOL = 1e-4


def check(module: nn.Module, *inputs: torch.Tensor, check_instructions: bool = False):
    """Import ``module``, verify the graph and compare its outputs with the module's."""
    module = module.eval()
    graph = verify(from_torch(module, inputs), check_instructions=check_instructions)
    with torch.no_grad():
        expected = module(*inputs)
        got = to_torch(graph)(*inputs)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert tuple(g.shape) == tuple(e.shape)
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=RTOL, atol=ATOL)
    return graph


# ---- zoo models ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["small_cnn", "tiny_attention"])
def test_zoo_small_models(name):
    torch.manual_seed(0)
    fn, shape = zoo.MODELS[name]
    graph = check(fn(), torch.randn(shape), check_instructions=True)
    ops = {n.op for n in graph.nodes}
    if name == "small_cnn":
        assert {"conv", "batchnorm", "relu", "maxpool", "global_avgpool", "dense"} <= ops
    else:
        assert {"layernorm", "dense", "matmul", "softmax", "gelu", "transpose"} <= ops


def test_parameters_become_named_constants():
    torch.manual_seed(0)
    graph = from_torch(zoo.small_cnn(), (torch.randn(1, 3, 32, 32),))
    consts = {n.name for n in graph.nodes if n.op == "constant"}
    assert {"blocks.0.0.weight", "blocks.0.1.running_var", "fc.weight", "fc.bias"} <= consts
    assert "blocks.0.1.num_batches_tracked" not in consts  # unused buffers are not imported
    assert graph.inputs == ("x",)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_zoo_cnns_small_input(name):
    torch.manual_seed(0)
    module = zoo.randomize_batchnorm_(zoo.MODELS[name][0]())
    check(module, torch.randn(1, 3, 64, 64))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_zoo_cnns_full_size(name):
    torch.manual_seed(0)
    module = zoo.randomize_batchnorm_(zoo.MODELS[name][0]())
    check(module, torch.randn(1, 3, 224, 224))


def test_zoo_architectures_match_torchvision_sizes():
    """Parameter counts of the torchvision reference models (torchvision itself is not installed)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(zoo.resnet18()) == 11_689_512
    assert count(zoo.mobilenet_v2()) == 3_504_872
    assert count(zoo.squeezenet1_1()) == 1_235_496


# ---- op coverage -----------------------------------------------------------------------------------------
class Activations(nn.Module):
    def forward(self, x):
        ys = [F.relu(x), F.relu6(x), F.hardtanh(x, -0.5, 0.5), torch.sigmoid(x), torch.tanh(x), F.gelu(x),
              F.gelu(x, approximate="tanh"), F.silu(x), F.hardswish(x), F.hardsigmoid(x), F.leaky_relu(x, 0.2),
              -x, torch.exp(x), torch.sqrt(x * x + 1), torch.erf(x)]
        return sum(ys)


class Arithmetic(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("k", torch.linspace(0.5, 1.5, 8))

    def forward(self, x, y):
        a = x + y * 2 - 1.5
        b = torch.add(x, y, alpha=0.5) - torch.sub(x, y, alpha=2)
        c = (3.0 - x) / (y * y + 1) + x / 4
        d = torch.maximum(x, y) * torch.minimum(x, self.k) + (x * x + 1) ** 0.5 + torch.pow(x.abs() + 1, y)
        return a + b + c + d


class Shapes(nn.Module):
    def forward(self, x):  # x: [2, 6, 4, 4]
        a, b = x.chunk(2, dim=1)
        c, d, e = torch.split(x, [1, 2, 3], dim=1)
        f = x[:, 1:5:2, ..., -3:]                       # slices with step and negative start
        g = x.select(1, -1).unsqueeze(1)               # select + unsqueeze
        h = torch.cat([a * b, c, d + e[:, :2], f.mean(dim=(2, 3), keepdim=True).expand(2, 2, 4, 4)], dim=1)
        i = h.permute(0, 2, 3, 1).reshape(2, 16, -1).transpose(1, 2).contiguous()
        j = i.view(2, -1).t().flatten()
        k = g.squeeze(1).sum(dim=-1) + g.amax(dim=(1, 2)).squeeze()
        parts = x.unbind(0)
        return j, k, parts[1] - parts[0], F.softmax(h, dim=1), torch.flatten(x, 1)


class Pools(nn.Module):
    def forward(self, x):  # [1, 3, 12, 12]
        return (F.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 2, ceil_mode=True), F.max_pool2d(x, 3, 1, 0, 2),
                F.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), F.avg_pool2d(x, 2),
                F.adaptive_avg_pool2d(x, 1), F.adaptive_avg_pool2d(x, (3, 4)), x.mean(), x.sum(dim=1),
                F.max_pool1d(x.flatten(2), 4), F.adaptive_avg_pool1d(x.flatten(2), 1))


class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 6, 3, padding=1, stride=2)
        self.c2 = nn.Conv2d(4, 8, 3, padding="same", dilation=2, bias=False)
        self.dw = nn.Conv2d(8, 8, 3, padding=(1, 0), groups=8)
        self.c3 = nn.Conv3d(4, 2, 2)
        self.bn1 = nn.BatchNorm1d(6)
        self.bn2 = nn.BatchNorm2d(8, affine=False)

    def forward(self, x):  # [1, 4, 6, 6]
        return self.bn1(self.c1(x.flatten(2))), self.dw(self.bn2(self.c2(x))), self.c3(x.reshape(1, 4, 2, 3, 6))


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 5)
        self.w = nn.Parameter(torch.randn(8, 3))
        self.v = nn.Parameter(torch.randn(8))
        self.ln = nn.LayerNorm([4, 8])
        self.ln_nb = nn.LayerNorm(8, bias=False)

    def forward(self, x, y):  # x: [2, 4, 8], y: [2, 8, 3]
        return (self.fc(x), torch.addmm(self.fc.bias, x[0], self.fc.weight.t()), x[0] @ self.w, torch.mm(x[1], self.w),
                torch.bmm(x, y), torch.matmul(x, self.v), torch.matmul(self.v, y), x @ y, self.ln(x), self.ln_nb(x),
                torch.addmm(x[0, :, :4], x[1], x[0].t(), beta=0.5, alpha=2.0))


class Attention(nn.Module):
    def forward(self, q, k, v, mask):
        return (F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True),
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3),
                F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(8, 8, dtype=torch.bool).tril()))


class Inplace(nn.Module):
    def forward(self, x):
        y = x * 2
        y.relu_()
        z = y.clone()
        z.add_(1.0)
        return y + z, F.dropout(x, 0.5, training=False)


class InplaceThroughView(nn.Module):
    """Mutations seen through views and aliases: the importer must fall back to torch's functionalization."""

    def forward(self, x):
        y = x * 2
        v = y.view(-1)
        y.relu_()
        w = y.mul_(3).add_(1)
        return v + 1, w - y


@pytest.mark.parametrize("module,shapes", [
    (Activations(), [(2, 3, 8)]), (Arithmetic(), [(2, 8), (2, 8)]), (Shapes(), [(2, 6, 4, 4)]),
    (Pools(), [(1, 3, 12, 12)]), (Convs(), [(1, 4, 6, 6)]), (Linear(), [(2, 4, 8), (2, 8, 3)]),
    (Attention(), [(1, 2, 8, 4), (1, 2, 8, 4), (1, 2, 8, 4), (8, 8)]), (Inplace(), [(3, 4)]),
    (InplaceThroughView(), [(3, 4)]),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_op_mix(module, shapes):
    torch.manual_seed(0)
    for m in module.modules():  # observable batch norms
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    check(module, *(torch.randn(s) for s in shapes))


def test_expand_broadcasts_with_a_small_zero_constant():
    class M(nn.Module):
        def forward(self, x):  # [2, 1, 4] -> [3, 2, 5, 4]
            return x.unsqueeze(0).expand(3, -1, 5, -1) * 2

    graph = check(M(), torch.randn(2, 1, 4))
    zeros = [graph.params[n.name] for n in graph.nodes if n.op == "constant" and not graph.params[n.name].any()]
    assert [z.shape for z in zeros] == [(3, 1, 5, 1)]


def test_sdpa_is_spelled_with_ir_ops():
    torch.manual_seed(0)
    q = torch.randn(1, 2, 8, 4)
    graph = check(Attention(), q, q, q, torch.randn(8, 8))
    assert {n.op for n in graph.compute_nodes} <= {"matmul", "transpose", "mul", "add", "softmax"}


def test_constant_subexpressions_are_evaluated_at_import():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            scale = torch.ones(4) * math.sqrt(2.0)
            return F.linear(x, self.w.t() * 2) + scale  # w.t()*2 and ones*sqrt2 are constants

    graph = check(M(), torch.randn(3, 4))
    assert sorted(n.op for n in graph.compute_nodes) == ["add", "dense"]


def test_multiple_inputs_and_nested_outputs():
    class M(nn.Module):
        def forward(self, x, y):
            return {"sum": x + y, "pair": (x * y, F.relu(x))}

    x, y = torch.randn(2, 3), torch.randn(2, 3)
    graph = verify(from_torch(M(), (x, y)))
    assert len(graph.inputs) == 2 and len(graph.outputs) == 3


# ---- errors ----------------------------------------------------------------------------------------------
def _one_line_error(module, *inputs) -> str:
    with pytest.raises(ModelImportError) as err:
        from_torch(module, inputs)
    msg = str(err.value)
    assert "\n" not in msg and err.value.__cause__ is None
    return msg


def test_unsupported_aten_op_names_node_and_op():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(3, 2, 2, stride=2)

        def forward(self, x):
            return self.up(x)

    msg = _one_line_error(Up(), torch.randn(1, 3, 4, 4))
    assert msg.startswith("Up: node 'conv_transpose2d' (aten op aten.conv_transpose2d.input): unsupported op; "
                          "supported: ")
    assert "aten.conv2d.default" in msg

    class Cum(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    assert "(aten op aten.cumsum.default): unsupported op" in _one_line_error(Cum(), torch.randn(2, 3))


def test_unsupported_arguments_are_named():
    class Floor(nn.Module):
        def forward(self, x, y):
            return torch.div(x, y, rounding_mode="floor")

    msg = _one_line_error(Floor(), torch.randn(2, 3), torch.randn(2, 3))
    assert "node 'div' (aten op aten.div.Tensor_mode): rounding_mode='floor' is not supported" in msg


def test_export_failure_is_one_line():
    class DataDependent(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    assert _one_line_error(DataDependent(), torch.randn(3)).startswith("DataDependent: torch.export failed: ")


def test_integer_inputs_promoted_to_float_are_refused_not_truncated():
    # x · 0.5 on int64 is float32 in torch; imported as int64 · int64(0) it gave zeros
    import nacos
    from ir.frontends import ModelImportError

    class Half(torch.nn.Module):
        def forward(self, x):
            return x * 0.5

    with pytest.raises(ModelImportError, match="dtype int64 differs from torch's float32"):
        nacos.load(Half(), (torch.arange(6).reshape(2, 3),))


def test_conversions_to_the_same_dtype_and_unflatten_are_imported():
    # x.float() on float32 (aten.to.dtype), sum(dtype=float32) and unflatten (nn.TransformerEncoderLayer uses it)
    # were refused as unsupported
    class M(nn.Module):
        def forward(self, x):
            y = x.float().to(torch.float32).unflatten(1, (2, -1))
            return y.sum(dim=-1, dtype=torch.float32)

    check(M(), torch.randn(3, 8))

    class Half(nn.Module):
        def forward(self, x):
            return x.half()

    assert "dtype conversion to torch.float16 is not supported" in _one_line_error(Half(), torch.randn(3))


def test_import_leaves_the_module_in_its_mode():
    module = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(4)))
    module.train()
    module[2].eval()  # mixed modes come back as they were
    from_torch(module, (torch.randn(2, 4),))
    assert module.training and module[1].training and not module[2].training and not module[2][0].training


def test_transformer_encoder_layer():
    torch.manual_seed(0)
    check(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0), torch.randn(2, 5, 16))
