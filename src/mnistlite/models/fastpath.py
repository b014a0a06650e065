"""The CPU fast path for models written in plain torch, without rewriting them.

A user's model built from nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout and
nn.MaxPool2d gets the same fused BatchNorm-ReLU(-Dropout) unit and sparse
dropout mask as the zoo's models (fused.py, dropout.py; profiled in
docs/performance.md):

1. every plain `nn.Dropout` becomes mnistlite's `Dropout` and every plain
   `nn.Sequential` a `FusedSequential`, by swapping the instance's class: both
   are drop-in subclasses, so children, parameters and state_dict keys stay
   exactly as the user wrote them (model.pt loads into the user's own class);
2. a BatchNorm2d -> ReLU [-> Dropout] run written out in a `forward` method is
   found by tracing it with torch.fx and replaced by one call of the fused unit,
   which reads the same BatchNorm module, so again no parameter moves.

Whatever cannot be covered (a forward that fx cannot trace, a BatchNorm whose
output is used twice) runs as plain torch; `accelerate` says so in one line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from .dropout import Dropout
from .fused import FusedSequential, _fusable_bn, bn_relu_unit, is_plain_pool2, max_pool2_unit


class _Tracer(fx.Tracer):
    """torch.nn's layers are leaves by default; mnistlite's drop-in subclasses must be too
    (their forward picks a path by the tensor's layout, which fx cannot trace)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (FusedSequential, Dropout)) or super().is_leaf_module(m, qualname)


def _swap_classes(model: nn.Module) -> int:
    """Give plain Sequential and Dropout instances mnistlite's subclasses; the number of Dropouts swapped."""
    drops = 0
    for m in model.modules():
        if type(m) is nn.Sequential:
            m.__class__ = FusedSequential
        elif type(m) is nn.Dropout:
            m.__class__ = Dropout
            drops += 1
    return drops


def _sequential_pairs(model: nn.Module) -> set[nn.Module]:
    """BatchNorms a FusedSequential already fuses (followed by a ReLU inside it)."""
    done: set[nn.Module] = set()
    for m in model.modules():
        if isinstance(m, FusedSequential):
            kids = list(m)
            done |= {a for a, b in zip(kids, kids[1:]) if _fusable_bn(a) and type(b) is nn.ReLU}
    return done


def _is_relu(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(mods.get(str(node.target))) is nn.ReLU
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu, torch.relu_)
    return node.op == "call_method" and node.target in ("relu", "relu_")


_POOL_ARGS = ("kernel_size", "stride")  # what fx may leave positional after the input


def _is_pool2(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """A plain 2x2 max-pool: an nn.MaxPool2d(2) module, or F.max_pool2d(x, 2) judged as the
    module its arguments spell (fx records the call's defaults as keywords): one test for both."""
    if node.op == "call_module":
        return is_plain_pool2(mods.get(str(node.target), nn.Identity()))
    if node.op != "call_function" or node.target not in (F.max_pool2d, torch.max_pool2d):
        return False
    if not 2 <= len(node.args) <= 3:
        return False
    try:
        pool = nn.MaxPool2d(**dict(zip(_POOL_ARGS, node.args[1:])), **node.kwargs)  # type: ignore[arg-type]
    except TypeError:  # a keyword the module does not take
        return False
    return is_plain_pool2(pool)


def _route_pools(gm: fx.GraphModule) -> None:
    """Route the traced graph's plain 2x2 max-pools through `max_pool2_unit` (the compiled pool)."""
    mods = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if not _is_pool2(node, mods):
            continue
        with gm.graph.inserting_before(node):
            ref = (gm.graph.get_attr(str(node.target)),) if node.op == "call_module" else ()
            unit = gm.graph.call_function(max_pool2_unit, (node.args[0], *ref))
        node.replace_all_uses_with(unit)
        gm.graph.erase_node(node)


def _fuse_forward(model: nn.Module, covered: set[nn.Module]) -> tuple[nn.Module, int, str]:
    """Trace `model` and route its BN -> ReLU [-> Dropout] runs through the fused unit (and,
    in the same graph, its 2x2 max-pools through the compiled pool)."""
    loose = [m for m in model.modules() if _fusable_bn(m) and m not in covered]
    if not loose:
        return model, 0, ""
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as e:  # noqa: BLE001 -- data-dependent control flow and the like
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        return model, 0, f"its forward could not be traced by torch.fx ({first})"
    mods = dict(gm.named_modules())
    fused = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or str(node.target) not in mods or not _fusable_bn(mods[str(node.target)]):
            continue
        if mods[str(node.target)] in covered or len(node.users) != 1:
            continue
        relu = next(iter(node.users))
        if not _is_relu(relu, mods):
            continue
        end, drop_name = relu, None
        if len(relu.users) == 1:
            nxt = next(iter(relu.users))
            if nxt.op == "call_module" and isinstance(mods.get(str(nxt.target)), nn.Dropout):
                end, drop_name = nxt, str(nxt.target)
        with gm.graph.inserting_before(node):
            bn_ref = gm.graph.get_attr(str(node.target))
            args = (node.args[0], bn_ref) + ((gm.graph.get_attr(drop_name),) if drop_name else ())
            unit = gm.graph.call_function(bn_relu_unit, args)
        end.replace_all_uses_with(unit)
        for dead in ([end] if end is not relu else []) + [relu, node]:
            gm.graph.erase_node(dead)
        fused += 1
    if not fused:
        return model, 0, ""
    _route_pools(gm)
    gm.graph.lint()
    gm.recompile()
    if set(gm.state_dict()) != set(model.state_dict()):  # e.g. a layer forward never calls
        return model, 0, "tracing would change its state_dict keys"
    return gm, fused, ""


def accelerate(model: nn.Module) -> tuple[nn.Module, str]:
    """(the model on the fast path, one line for the log saying what it covers)."""
    drops = _swap_classes(model)
    covered = _sequential_pairs(model)
    model_out, traced, why = _fuse_forward(model, covered)
    bns = sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    fused = len(covered) + traced
    parts = [f"{fused} of {bns} BatchNorm layers fused with their ReLU"]
    if covered:
        parts.append(f"{len(covered)} in nn.Sequential")
    if traced:
        parts.append(f"{traced} in forward (torch.fx)")
    if drops:
        parts.append(f"{drops} Dropout with the sparse mask")
    if isinstance(model_out, fx.GraphModule):
        pools = sum(1 for n in model_out.graph.nodes if n.target is max_pool2_unit)
        if pools:
            parts.append(f"{pools} max-pool{'s' if pools > 1 else ''} in forward on the compiled pool")
    line = "Fast path: " + ", ".join(parts)
    if fused < bns:
        line += f"; {bns - fused} run as plain torch" + (f": {why}" if why else "")
    return model_out, line
