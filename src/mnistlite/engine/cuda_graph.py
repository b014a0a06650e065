"""The training step as one CUDA graph replay: a tiny net's GPU step is ~200 kernel launches.
SGD only; the first `WARMUP` steps and a batch of another size (an epoch's remainder) run eagerly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import MnistliteError

Batch = tuple[torch.Tensor, torch.Tensor]  # (logits, loss), as Parts.step returns them
WARMUP = 3  # eager steps before capture (torch's recipe uses a few; cudnn picks its kernels there)


@dataclass(frozen=True)
class Decision:
    on: bool
    reason: str

    @property
    def value(self) -> str:
        return "on" if self.on else "off"

    @property
    def line(self) -> str:
        return f"CUDA graph: {self.value} ({self.reason})"


def why_not(cfg, device: torch.device) -> str:
    """Why the graphed step cannot run for `cfg` on `device` ("" when it can)."""
    if device.type != "cuda":
        return f"graphs are a CUDA feature; this run is on {device.type}"
    if cfg.optimizer != "sgd":
        return f"the graph-safe update covers SGD only, not {cfg.optimizer}"
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return f"torch {torch.__version__} cannot register the augmentation's generator with a graph"
    return ""


def resolve(cfg, device: torch.device) -> Decision:
    """cfg.cuda_graph (auto | on | off) settled for `device`; `on` where it cannot run is an error."""
    if cfg.cuda_graph == "off":
        return Decision(False, "asked")
    reason = why_not(cfg, device)
    if reason and cfg.cuda_graph == "on":
        raise MnistliteError(f"--cuda-graph on cannot run here: {reason}")
    if reason:
        return Decision(False, reason)
    how = "asked;" if cfg.cuda_graph == "on" else "auto on CUDA:"
    return Decision(True, f"{how} {WARMUP} eager warm-up steps, then one replay per step")


class GraphSafeSGD:
    """torch.optim.SGD's update (dampening 0) with lr and momentum in 0-dim device tensors refilled before each
    replay (torch's reads floats a graph would freeze), on the optimizer's momentum buffers (checkpoints see them)."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.groups = []
        for group in optimizer.param_groups:
            if group.get("dampening", 0) or group.get("maximize", False):
                raise MnistliteError("the graph-safe SGD covers dampening 0 and maximize off only")
            params = [p for p in group["params"] if p.grad is not None]
            dev = params[0].device if params else torch.device("cpu")
            bufs = []
            if group["momentum"]:
                for p in params:
                    state = optimizer.state[p]
                    if state.get("momentum_buffer") is None:
                        # Zeros make the first update buf = grad, as torch's first step's clone does.
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    bufs.append(state["momentum_buffer"])
            self.groups.append((group, params, bufs, torch.zeros((), device=dev), torch.zeros((), device=dev)))
        self.load_hyper()

    def load_hyper(self) -> None:
        for group, _, _, lr, mom in self.groups:
            lr.fill_(group["lr"])
            mom.fill_(group["momentum"])

    @torch.no_grad()
    def step(self) -> None:
        for group, params, bufs, lr, mom in self.groups:
            if not params:
                continue
            grads: list[torch.Tensor] | tuple[torch.Tensor, ...] = [p.grad for p in params if p.grad is not None]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if bufs:
                torch._foreach_mul_(bufs, mom)
                torch._foreach_add_(bufs, grads)
                if group["nesterov"]:
                    grads = torch._foreach_add(grads, torch._foreach_mul(bufs, mom))
                else:
                    grads = bufs
            torch._foreach_sub_(params, torch._foreach_mul(grads, lr))


class GraphStep:
    """A training step replayed from a CUDA graph once warmed up; returns (logits, loss). The augmentation's
    generator is registered with the graph, so replays advance its Philox offset as eager calls do."""

    def __init__(self, parts, warmup: int = WARMUP, capture: bool | None = None):
        self.parts = parts
        self.warmup = max(1, warmup)
        self.capture = parts.generator.device.type == "cuda" if capture is None else bool(capture)
        self.calls = 0
        self.full_shape: tuple[int, ...] | None = None  # the first batch's: every later one but a remainder
        self.graph: torch.cuda.CUDAGraph | None = None
        self.sgd: GraphSafeSGD | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.static_out: Batch | None = None
        self.side = torch.cuda.Stream() if self.capture else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        self.calls += 1
        self.full_shape = self.full_shape or tuple(x.shape)
        full = tuple(x.shape) == self.full_shape
        if self.graph is not None and full:
            return self._replay(x, y)
        if self.calls <= self.warmup or not full:
            return self._eager(x, y)
        return self._capture(x, y) if self.capture else self._uncaptured(x, y)  # uncaptured: the CPU tests

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        if self.side is None:
            return self.parts.step(x, y)
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            out = self.parts.step(x, y)
        torch.cuda.current_stream().wait_stream(self.side)
        return out

    def _body(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        """What the graph holds: forward, backward, the graph-safe update, the average."""
        p = self.parts
        logits, loss = p.forward(x, y)
        loss.backward()
        assert self.sgd is not None
        self.sgd.step()
        if p.ema is not None:
            p.ema.update_parameters(p.model, count=not self.capture)
        return logits, loss

    def _uncaptured(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        if self.sgd is None:
            self.sgd = GraphSafeSGD(self.parts.optimizer)
        self.sgd.load_hyper()
        self.parts.optimizer.zero_grad(set_to_none=True)
        out = self._body(x, y)
        self.parts.schedule.after_batch()
        return out

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        p = self.parts
        torch.cuda.synchronize()
        self.sgd = GraphSafeSGD(p.optimizer)  # after warm-up: every trained parameter has a grad
        self.static = (x.clone(), y.clone())
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(p.generator)
        p.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates (not accumulates) grads
        with torch.cuda.graph(graph):
            self.static_out = self._body(*self.static)
        self.graph = graph
        return self._replay(x, y)

    def _replay(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        assert self.graph is not None and self.sgd is not None and self.static is not None and self.static_out
        self.static[0].copy_(x)
        self.static[1].copy_(y)
        self.sgd.load_hyper()
        self.graph.replay()
        self.parts.schedule.after_batch()
        if self.parts.ema is not None:
            self.parts.ema.n_averaged += 1
        return self.static_out


def stepper(parts, decision: Decision) -> Callable[[torch.Tensor, torch.Tensor], Batch]:
    return GraphStep(parts) if decision.on else parts.step
