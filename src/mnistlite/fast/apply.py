"""The CPU fast path for models written in plain torch, without rewriting them.

1. every plain `nn.Dropout` becomes mnistlite's `Dropout`, always: the mask is part of the
   run (which random numbers a seed draws), not of the speed switch;
2. with `fused`, every plain `nn.Sequential` becomes a `FusedSequential` by swapping the
   instance's class, so children and state_dict keys stay as written;
3. with `fused`, a BatchNorm2d -> ReLU [-> Dropout] run in a `forward` is found by torch.fx
   and replaced by one call of the fused unit, which reads the same BatchNorm module.

Swapping classes draws no random numbers. What cannot be covered runs as plain torch, and
`accelerate` says so in one line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import kernels
from .dropout import Dropout
from .unit import FusedSequential, bn_relu_unit, fusable_bn, is_plain_pool2, max_pool2_unit


class _Tracer(fx.Tracer):
    """torch.nn's layers are leaves by default; mnistlite's drop-in subclasses must be too
    (their forward picks a path by the tensor's layout, which fx cannot trace)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (FusedSequential, Dropout)) or super().is_leaf_module(m, qualname)


def _swap_classes(model: nn.Module, fused: bool) -> int:
    """Give plain Dropout (and, if `fused`, Sequential) instances mnistlite's subclasses;
    the number of Dropouts swapped."""
    drops = 0
    for m in model.modules():
        if type(m) is nn.Sequential and fused:
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
            done |= {a for a, b in zip(kids, kids[1:]) if fusable_bn(a) and type(b) is nn.ReLU}
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
    in the same graph, its 2x2 max-pools through the compiled pool); the BNs fused join `covered`."""
    loose = [m for m in model.modules() if fusable_bn(m) and m not in covered]
    # A Sequential's loose BNs are followed by no ReLU: nothing to fuse (and its forward is not traceable).
    if not loose or isinstance(model, FusedSequential):
        return model, 0, ""
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as e:  # noqa: BLE001 -- data-dependent control flow and the like
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        return model, 0, f"its forward could not be traced by torch.fx ({first})"
    mods = dict(gm.named_modules())
    fused: list[nn.Module] = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or str(node.target) not in mods or not fusable_bn(mods[str(node.target)]):
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
        fused.append(mods[str(node.target)])
    if not fused:
        return model, 0, ""
    _route_pools(gm)
    gm.graph.lint()
    gm.recompile()
    if set(gm.state_dict()) != set(model.state_dict()):  # e.g. a layer forward never calls
        return model, 0, "tracing would change its state_dict keys"
    covered.update(fused)
    return gm, len(fused), ""


def _fuse_inside_sequentials(model: nn.Module, covered: set[nn.Module]) -> tuple[int, str]:
    """Trace the modules a FusedSequential calls whose own forward holds loose BNs (the tracer
    stops at the Sequential: its forward picks a path by the tensor's layout)."""
    fused, why = 0, ""
    for seq in [m for m in model.modules() if isinstance(m, FusedSequential)]:
        for name, child in list(seq.named_children()):
            if isinstance(child, (FusedSequential, nn.BatchNorm2d)):
                continue
            new, n, w = _fuse_forward(child, covered)
            if new is not child:
                setattr(seq, name, new)
            fused, why = fused + n, why or w
    return fused, why


def accelerate(model: nn.Module, fused: bool = True) -> tuple[nn.Module, str]:
    """(the model on the fast path, one line for the log saying what it covers).

    `fused`: the BatchNorm-ReLU unit and the compiled pool, where the compiled loops run;
    without them only the dropout mask is swapped."""
    why_off = "" if not fused or kernels.available() else f": {kernels.why_not()}"
    fused = fused and not why_off
    drops = _swap_classes(model, fused)
    if not fused:
        line = "Fast path: off, torch's layers" + why_off
        return model, line + (f"; {drops} Dropout with the sparse mask" if drops else "")
    covered = _sequential_pairs(model)
    in_seq = len(covered)
    nested, why_nested = _fuse_inside_sequentials(model, covered)
    model_out, traced, why = _fuse_forward(model, covered)
    traced += nested
    bns = sum(1 for m in model_out.modules() if isinstance(m, nn.BatchNorm2d))
    parts = [f"{len(covered)} of {bns} BatchNorm layers fused with their ReLU"]
    if in_seq:
        parts.append(f"{in_seq} in nn.Sequential")
    if traced:
        parts.append(f"{traced} in forward (torch.fx)")
    if drops:
        parts.append(f"{drops} Dropout with the sparse mask")
    pools = sum(
        1
        for m in model_out.modules()
        if isinstance(m, fx.GraphModule)
        for n in m.graph.nodes
        if n.target is max_pool2_unit
    )
    if pools:
        parts.append(f"{pools} max-pool{'s' if pools > 1 else ''} in forward on the compiled pool")
    line = "Fast path: " + ", ".join(parts)
    if len(covered) < bns:
        why = why or why_nested
        line += f"; {bns - len(covered)} run as plain torch" + (f": {why}" if why else "")
    return model_out, line
