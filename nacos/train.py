"""Short, seeded training and evaluation of any IR graph through its torch module (``ir.exporters.to_torch``).

>>> result = train(graph, "digits", TrainConfig(epochs=5))
>>> result.test_accuracy, result.seconds
>>> trained = result.apply(graph)          # a new ir.Graph whose constants hold the trained weights

Graphs are built for one example (input batch 1, reshape shapes included), so a batch runs through
``torch.func.vmap`` over the module: each example sees exactly the graph's shapes. A graph built for a batch of
N > 1 is trained in batches of exactly N instead. The weights a graph reads as learnable (``OpDef.weight_inputs``)
are trained; the budget is fixed (``epochs`` and/or ``max_steps``), with early stopping on validation accuracy
and the best epoch's weights kept. Optional knowledge distillation from a teacher graph: loss =
α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ir.exporters import to_torch
from ir.graph import CONSTANT, Graph
from nacos.data import Dataset, Split, load


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None     # stop after this many optimizer steps even mid-epoch
    batch_size: int = 32
    lr: float = 5e-3                 # AdamW peak learning rate, cosine-decayed to 0 over the budget
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    seed: int = 0
    threads: int = 1                 # torch.set_num_threads during training (restored afterwards)
    patience: int | None = 3         # epochs without a better val accuracy before stopping; None: never
    progress: bool = True            # a rich progress bar (transient)
    distill_temperature: float = 4.0
    distill_alpha: float = 0.5
    eval_batch_size: int = 500


@dataclass(frozen=True, eq=False)
class TrainResult:
    test_accuracy: float
    val_accuracy: float              # of the kept (best) epoch
    best_epoch: int
    epochs: int                      # epochs run (fewer than configured after early stopping)
    steps: int
    seconds: float
    losses: tuple[float, ...]        # mean training loss of each epoch
    val_accuracies: tuple[float, ...]
    weights: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    def apply(self, graph: Graph) -> Graph:
        """``graph`` with its constants replaced by the trained weights (see :func:`with_weights`)."""
        return with_weights(graph, self.weights)

    def as_dict(self) -> dict[str, Any]:
        return {"test_accuracy": self.test_accuracy, "val_accuracy": self.val_accuracy,
                "best_epoch": self.best_epoch, "epochs": self.epochs, "steps": self.steps,
                "seconds": round(self.seconds, 3), "losses": list(self.losses),
                "val_accuracies": list(self.val_accuracies)}


# ---- weights <-> graphs --------------------------------------------------------------------------------------
def module_weights(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The trainable constants of a ``to_torch`` module, keyed by graph constant name."""
    params = dict(module.named_parameters())
    return {node: params[attr].detach().cpu().numpy().copy() for node, attr in module.attr_names.items()
            if attr in params}


def with_weights(graph: Graph, weights: Mapping[str, np.ndarray]) -> Graph:
    """A new graph whose constants named in ``weights`` hold those values (shapes must agree)."""
    nodes = graph.node_map
    params = dict(graph.params)
    for name, value in weights.items():
        node = nodes.get(name)
        if node is None or node.op != CONSTANT:
            raise KeyError(f"graph {graph.name!r} has no constant {name!r}")
        value = np.asarray(value, dtype=node.dtype)
        if value.shape != node.shape:
            raise ValueError(f"weight {name!r}: shape {value.shape} does not match the graph's {node.shape}")
        params[name] = value
    return graph.with_nodes(graph.nodes, params=params)


# ---- running a batch -------------------------------------------------------------------------------------------
def batched(module: torch.nn.Module, graph: Graph):
    """``f(x[B, ...]) -> logits[B, K]`` for a one-input graph; vmapped when the graph's batch is 1."""
    if len(graph.inputs) != 1:
        raise ValueError(f"training needs a one-input graph; {graph.name!r} has {len(graph.inputs)} inputs")
    if graph.input_types()[0].shape[0] == 1:
        per_example = torch.func.vmap(lambda xi: module(xi.unsqueeze(0)))
        return lambda x: per_example(x).reshape(x.shape[0], -1)
    return lambda x: module(x).reshape(x.shape[0], -1)


def _graph_batch(graph: Graph) -> int:
    return int(graph.input_types()[0].shape[0])


def check_examples(graph: Graph, example: Sequence[int], what: str, context: str = "", hint: str = "") -> None:
    """A ``ValueError`` when one example of shape ``example`` (no batch axis) is not what ``graph`` takes: its
    convolutions and pools would run at the examples' size, and the result would be another network's."""
    shape = tuple(graph.input_types()[0].shape)
    if tuple(example) != shape[1:]:
        raise ValueError(f"{context}graph {graph.name!r} takes inputs {list(shape)}, and {what} are "
                         f"{list(example)}{hint}")


def check_fit(graph: Graph, ds: Dataset) -> None:
    """A ``ValueError`` when ``graph`` cannot be trained and scored on ``ds``: examples of another shape
    (:func:`check_examples`), another number of classes, a fixed batch larger than the training split, or an
    empty split."""
    check_examples(graph, ds.input_shape[1:], f"{ds.name}'s examples", hint=": build the graph for the data's shape")
    shape = tuple(graph.input_types()[0].shape)
    out = graph.output_types()[0].shape
    classes = math.prod(out[1:]) if len(out) > 1 else 1  # the logits are read as (batch, everything else)
    if classes != ds.num_classes:
        raise ValueError(f"graph {graph.name!r} gives {classes} outputs, and {ds.name} has {ds.num_classes} classes")
    for split in ("train", "val", "test"):
        if len(getattr(ds, split)) == 0:
            raise ValueError(f"{ds.name}: its {split} split is empty")
    if shape[0] > len(ds.train):
        raise ValueError(f"graph {graph.name!r} has a fixed batch of {shape[0]}, larger than {ds.name}'s training "
                         f"split ({len(ds.train)} examples): no training step would run")


def _logits(fn, x: np.ndarray, batch: int, fixed: int) -> torch.Tensor:
    """Logits of all of ``x``, in chunks; a fixed-batch graph gets its last chunk zero-padded."""
    out = []
    for i in range(0, len(x), batch):
        xb = torch.tensor(x[i:i + batch])
        n = len(xb)
        if fixed > 1 and n < batch:
            xb = torch.cat([xb, xb.new_zeros((batch - n,) + tuple(xb.shape[1:]))])
        out.append(fn(xb)[:n])
    return torch.cat(out)


def evaluate(model: Graph | torch.nn.Module, split: Split, graph: Graph | None = None,
             batch_size: int = 500) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a graph (or its ``to_torch`` module, with ``graph``) on ``split``."""
    graph = model if isinstance(model, Graph) else graph
    module = to_torch(graph) if isinstance(model, Graph) else model
    check_examples(graph, split.x.shape[1:], "the split's examples")
    fixed = _graph_batch(graph)
    with torch.no_grad():
        logits = _logits(batched(module, graph), split.x, fixed if fixed > 1 else batch_size, fixed)
        y = torch.tensor(split.y)
        return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


# ---- training ------------------------------------------------------------------------------------------------
def train(graph: Graph, data: Dataset | str = "digits", config: TrainConfig | None = None,
          teacher: Graph | None = None, **overrides: Any) -> TrainResult:
    """Train ``graph``'s learnable constants on ``data`` and return the test/val accuracy of the best epoch.

    ``overrides`` replace fields of ``config`` (``train(g, "digits", epochs=3)``). ``teacher`` enables knowledge
    distillation from that graph's logits (it is not trained).
    """
    cfg = replace(config or TrainConfig(), **overrides)
    if cfg.epochs < 1 or (cfg.max_steps is not None and cfg.max_steps < 1) or cfg.batch_size < 1:
        raise ValueError(f"epochs={cfg.epochs}, max_steps={cfg.max_steps}, batch_size={cfg.batch_size}: each must "
                         "be at least 1 (with no step the result would be the untrained model's)")
    ds = load(data) if not isinstance(data, Dataset) else data
    check_fit(graph, ds)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(graph, ds, cfg, teacher)
    finally:
        torch.set_num_threads(previous_threads)


def _train(graph: Graph, ds: Dataset, cfg: TrainConfig, teacher: Graph | None) -> TrainResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    module = to_torch(graph).train()
    forward = batched(module, graph)
    fixed = _graph_batch(graph)
    batch = fixed if fixed > 1 else cfg.batch_size
    teach = None
    if teacher is not None:
        t_module = to_torch(teacher).eval()
        teach = batched(t_module, teacher)

    n = len(ds.train)
    per_epoch = n // batch if fixed > 1 else math.ceil(n / batch)
    total = cfg.epochs * per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * per_epoch)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, min(cfg.warmup_steps, total // 10))

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine to 0 at the end of the budget
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

    x_all, y_all = torch.tensor(ds.train.x), torch.tensor(ds.train.y)  # copies: the splits are read-only
    losses, vals = [], []
    best = (-1.0, 0, {k: v.detach().clone() for k, v in module.state_dict().items()})
    steps, stale = 0, 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, transient=True, disable=not cfg.progress) as bar:
        task = bar.add_task(f"train {graph.name}", total=total, status="")
        for epoch in range(cfg.epochs):
            if steps >= total:
                break
            order = torch.from_numpy(rng.permutation(n))
            epoch_loss, seen = 0.0, 0
            for i in range(per_epoch):
                if steps >= total:
                    break
                idx = order[i * batch:(i + 1) * batch]
                xb, yb = x_all[idx], y_all[idx]
                logits = forward(xb)
                loss = F.cross_entropy(logits, yb)
                if teach is not None:
                    with torch.no_grad():
                        t_logits = teach(xb)
                    temp, alpha = cfg.distill_temperature, cfg.distill_alpha
                    kd = F.kl_div(F.log_softmax(logits / temp, 1), F.log_softmax(t_logits / temp, 1),
                                  reduction="batchmean", log_target=True) * temp * temp
                    loss = alpha * kd + (1 - alpha) * loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)  # no batch norm: keep early steps from blowing up
                opt.step()
                sched.step()
                steps += 1
                epoch_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
                bar.update(task, advance=1)
            losses.append(epoch_loss / max(seen, 1))
            val_acc, _ = evaluate(module, ds.val, graph, cfg.eval_batch_size)
            vals.append(val_acc)
            bar.update(task, status=f"epoch {epoch + 1} loss {losses[-1]:.3f} val {val_acc:.3f}")
            if val_acc > best[0]:
                best = (val_acc, epoch, {k: v.detach().clone() for k, v in module.state_dict().items()})
                stale = 0
            else:
                stale += 1
                if cfg.patience is not None and stale >= cfg.patience:
                    break
    module.load_state_dict(best[2])
    module.eval()
    test_acc, _ = evaluate(module, ds.test, graph, cfg.eval_batch_size)
    weights = MappingProxyType(module_weights(module))
    return TrainResult(test_acc, best[0], best[1], len(losses), steps, time.perf_counter() - start,
                       tuple(losses), tuple(vals), weights)
