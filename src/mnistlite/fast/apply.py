"""The CPU fast path for plain-torch models, unrewritten: plain Dropouts always become mnistlite's (the mask is
part of the run, not of the speed switch); with `fused`, plain Sequentials become FusedSequential (a class
swap) and torch.fx routes `forward`s' runs through the unit. No random numbers are drawn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import kernels
from .dropout import Dropout
from .unit import FusedSequential, bn_relu_unit, fusable_bn, is_plain_pool2, max_pool2_unit


class _Tracer(fx.Tracer):
    """mnistlite's drop-in subclasses are leaves too: their forward picks a path by the layout, untraceable."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (FusedSequential, Dropout)) or super().is_leaf_module(m, qualname)


def _is_relu(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(mods.get(str(node.target))) is nn.ReLU
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu, torch.relu_)
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _is_pool2(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """A plain 2x2 max-pool: an nn.MaxPool2d(2) module, or F.max_pool2d(x, 2) judged as the module its
    arguments spell (fx records the call's defaults as keywords)."""
    if node.op == "call_module":
        return is_plain_pool2(mods.get(str(node.target), nn.Identity()))
    if node.op != "call_function" or node.target not in (F.max_pool2d, torch.max_pool2d):
        return False
    if not 2 <= len(node.args) <= 3:
        return False
    try:
        args = dict(zip(("kernel_size", "stride"), node.args[1:]))  # what fx may leave positional
        pool = nn.MaxPool2d(**args, **node.kwargs)  # type: ignore[arg-type]
    except TypeError:  # a keyword the module does not take
        return False
    return is_plain_pool2(pool)


def _route_pools(gm: fx.GraphModule) -> None:
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
    """Trace `model`, route its BN -> ReLU [-> Dropout] runs and 2x2 max-pools to the loops; fused BNs join covered."""
    # A Sequential's loose BNs are followed by no ReLU: nothing to fuse (and its forward is not traceable).
    if isinstance(model, FusedSequential) or not any(fusable_bn(m) and m not in covered for m in model.modules()):
        return model, 0, ""
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as e:  # noqa: BLE001 -- data-dependent control flow and the like
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        return model, 0, f"its forward could not be traced by torch.fx ({first})"
    mods = dict(gm.named_modules())
    fused: list[nn.Module] = []
    for node in list(gm.graph.nodes):
        bn = mods.get(str(node.target)) if node.op == "call_module" else None
        if not fusable_bn(bn) or bn in covered or len(node.users) != 1:
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
            refs = [gm.graph.get_attr(name) for name in (str(node.target), drop_name) if name]
            unit = gm.graph.call_function(bn_relu_unit, (node.args[0], *refs))
        end.replace_all_uses_with(unit)
        for dead in ([end] if end is not relu else []) + [relu, node]:
            gm.graph.erase_node(dead)
        fused.append(bn)
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
    """Trace the modules a FusedSequential calls whose own forward holds loose BNs (the tracer stops at it)."""
    fused, why = 0, ""
    for seq in [m for m in model.modules() if isinstance(m, FusedSequential)]:
        for name, child in list(seq.named_children()):
            if isinstance(child, (FusedSequential, nn.BatchNorm2d)):
                continue
            new, n, w = _fuse_forward(child, covered)
            setattr(seq, name, new)
            fused, why = fused + n, why or w
    return fused, why


def accelerate(model: nn.Module, fused: bool = True) -> tuple[nn.Module, str]:
    """(the model on the fast path, one log line on what it covers); unfused, only the dropout mask is swapped."""
    why_off = "" if not fused or kernels.available() else f": {kernels.why_not()}"
    fused = fused and not why_off
    drops = 0
    covered: set[nn.Module] = set()  # the BatchNorms fused: first those followed by a ReLU in a FusedSequential
    for m in model.modules():  # swap plain Dropouts' (and, fused, Sequentials') class for mnistlite's subclass
        if type(m) is nn.Sequential and fused:
            m.__class__ = FusedSequential
        elif type(m) is nn.Dropout:
            m.__class__ = Dropout
            drops += 1
        if fused and isinstance(m, FusedSequential):
            kids = list(m)
            covered |= {a for a, b in zip(kids, kids[1:]) if fusable_bn(a) and type(b) is nn.ReLU}
    if not fused:
        line = "Fast path: off, torch's layers" + why_off
        return model, line + (f"; {drops} Dropout with the sparse mask" if drops else "")
    in_seq = len(covered)
    nested, why_nested = _fuse_inside_sequentials(model, covered)
    model_out, traced, why = _fuse_forward(model, covered)
    traced += nested
    bns = sum(1 for m in model_out.modules() if isinstance(m, nn.BatchNorm2d))
    graphs = [m for m in model_out.modules() if isinstance(m, fx.GraphModule)]
    pools = sum(n.target is max_pool2_unit for g in graphs for n in g.graph.nodes)
    parts = [
        f"{len(covered)} of {bns} BatchNorm layers fused with their ReLU",
        f"{in_seq} in nn.Sequential" if in_seq else "",
        f"{traced} in forward (torch.fx)" if traced else "",
        f"{drops} Dropout with the sparse mask" if drops else "",
        f"{pools} max-pool{'s' if pools > 1 else ''} in forward on the compiled pool" if pools else "",
    ]
    line = "Fast path: " + ", ".join(filter(None, parts))
    if len(covered) < bns:
        why = why or why_nested
        line += f"; {bns - len(covered)} run as plain torch" + (f": {why}" if why else "")
    return model_out, line
