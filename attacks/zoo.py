"""ZOO: zeroth-order optimisation black-box attack (Chen et al. 2017, arXiv:1708.03999), our own.

The attack sees the model's outputs only (every call of ``dense`` runs under ``torch.no_grad``) and
maximises the task's black-box objective f(x) = ``task.blackbox_objective(dense(x), target)``
(saliency: pixel BCE against the GT or the clean prediction; classification: the negated C&W margin).

Gradient and curvature estimates of the paper, per sampled coordinate i of the perturbation variable delta, with
the symmetric difference quotient

    g_i = (f(x + h e_i) - f(x - h e_i)) / 2h,      h_i = (f(x + h e_i) - 2 f(x) + f(x - h e_i)) / h^2.

The paper's two coordinate solvers, written for ascent on f:

* ``adam`` (ZOO-ADAM), per coordinate: M_i <- b1 M_i + (1-b1) g_i, v_i <- b2 v_i + (1-b2) g_i^2, T_i += 1,
  delta_i += lr * (M_i / (1-b1^T_i)) / (sqrt(v_i / (1-b2^T_i)) + 1e-8), with b1 = 0.9, b2 = 0.999.
* ``newton`` (ZOO-Newton): delta_i += -lr g_i / h_i where f is locally concave along e_i (h_i < 0,
  a Newton step to the maximum), else delta_i += lr g_i (a gradient step).

Each step samples B coordinates per image without replacement, by the paper's importance sampling:
probability = 1/2 uniform + 1/2 proportional to |delta| max-pooled over 8x8 blocks of the variable
(uniform while delta = 0). The 2B perturbed copies of all images, plus one centre query f(x) per image,
go through ``dense`` in batched forward passes of at most ``query_batch`` copies.

The paper's hierarchical attack: delta lives at 32x32, then 64x64, then the input size S (sizes
>= S skipped); it is upsampled bilinearly to S, and when a stage ends it is resampled bilinearly to
the next size (the Adam state starts afresh). The clean image is never resampled:

    x = Proj(u0 + up(delta)).

Proj, with E = ``threat.space_eps``: L-inf: clamp to [u0 - E, u0 + E], then to [0,1]. L2: clamp to
[0,1], then rescale x - u0 into the ball ||x - u0||_2 <= E; that is a feasible point, not the exact
Euclidean projection onto ball and box. delta itself stays within the ball: L-inf |delta| <= E
(bilinear upsampling interpolates, so |up(delta)| <= E too), L2 ||up(delta)||_2 <= E (up is linear,
so delta is rescaled).

Queries go to ``dense`` in batches of copies, through the query counter's ``copies_of(index)`` (see
``queries.py``): the view for a batch whose row j is a copy of image ``index[j]``, which charges row j to
that image and fills in its per-image inputs (the saliency view adds the clean unattacked modality).

Query budget ``threat.queries`` per image, the clean query included. What remains after the clean query
is split equally across the stages; what a stage leaves unspent passes on to the next. A step costs
one centre query (the iterate the last update produced) plus 2B perturbed ones, and B shrinks so that
the centre of the last update is always evaluated within the budget. With ``task.early_stop`` an image
stops once a centre query succeeds, and so does its count (``info["queries"]``, the counter's). The
attack returns, per image, the centre with the highest objective (or the successful one an image
stopped on).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AttackOutput, check_norm
from .queries import QueryCounter, counted
from .threat import ThreatModel

STAGE_SIZES = (32, 64)  # variable sizes before the full resolution
BLOCK = 8  # importance-sampling block of the variable, in variable pixels
UNIFORM_MIX = 0.5  # weight of the uniform distribution in the sampling probability
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _upsample(delta: Tensor, size: int) -> Tensor:
    if delta.shape[-1] == size:
        return delta
    return F.interpolate(delta, size=(size, size), mode="bilinear", align_corners=False)


def project_image(u0: Tensor, perturbation: Tensor, threat: ThreatModel) -> Tensor:
    """Proj(u0 + perturbation) onto the threat model's ball intersected with [0,1]."""
    eps = threat.space_eps
    if threat.norm == "linf":
        return torch.minimum(torch.maximum(u0 + perturbation, u0 - eps), u0 + eps).clamp(0, 1)
    step = (u0 + perturbation).clamp(0, 1) - u0
    norm = step.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return u0 + step * (eps / norm).clamp(max=1.0)


def constrain_variable(delta: Tensor, size: int, threat: ThreatModel) -> Tensor:
    """Keep delta within the ball: |delta| <= E (L-inf), ||up(delta)||_2 <= E (L2)."""
    eps = threat.space_eps
    if threat.norm == "linf":
        return delta.clamp(-eps, eps)
    norm = _upsample(delta, size).flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return delta * (eps / norm).clamp(max=1.0)


def sampling_probability(delta: Tensor) -> Tensor:
    """(N, D) importance-sampling probability of each coordinate of delta (N,C,r,r)."""
    n, d = len(delta), delta[0].numel()
    pooled = F.max_pool2d(delta.abs(), BLOCK, ceil_mode=True)
    weight = F.interpolate(pooled, size=delta.shape[-2:], mode="nearest").flatten(1)
    total = weight.sum(1, keepdim=True)
    importance = torch.where(total > 0, weight / total.clamp_min(1e-30), torch.full_like(weight, 1 / d))
    return UNIFORM_MIX / d + (1 - UNIFORM_MIX) * importance.view(n, d)


class ZOO:
    """ZOO-ADAM / ZOO-Newton with importance sampling and a hierarchical variable (see the module)."""

    backend = "ours"
    black_box = True
    norms = ("linf", "l2")

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 solver: str = "adam", coords: int = 128, query_batch: int = 512, reference: str = "gt",
                 lr: float | None = None, h: float | None = None, **params: Any) -> AttackOutput:
        """``coords``: B coordinates per image and step; ``query_batch``: copies per forward pass;
        ``reference``: attack the GT ("gt") or the clean prediction ("clean"); ``lr`` defaults to
        ``threat.step_size`` and the difference step ``h`` to a quarter of it (with the paper's h = 1e-4,
        g_i comes in float32 steps of the objective divided by 2h, coarse for a dense objective averaged
        over thousands of pixels). Other params the runner passes (``names``) are ignored."""
        check_norm("ZOO", self.norms, threat)
        if threat.queries is None:
            raise ValueError("ZOO is a black-box attack: the threat model needs a query budget (queries=)")
        if solver not in ("adam", "newton"):
            raise ValueError(f"unknown solver {solver!r}; use 'adam' or 'newton'")
        if reference not in ("gt", "clean"):
            raise ValueError(f"unknown reference {reference!r}; use 'gt' or 'clean'")
        lr = threat.step_size if lr is None else lr
        h = threat.step_size / 4 if h is None else h
        counter = counted(dense, u0, threat.queries)
        with torch.no_grad():  # outputs only
            run = _ZooRun(counter, u0.detach(), target, reference, threat, threat.queries, task, query_batch)
            if threat.space_eps > 0:
                run.optimise(solver, coords, lr, h)
        return AttackOutput(u=run.best_u, info={"queries": counter.per_image(u0),
                                                "success": run.best_success.float()})


class _ZooRun:
    """One ZOO run on a batch: the queries spent and the best centre per image. Starts with the clean
    query, which also gives the "clean" reference target and the images that already succeed."""

    def __init__(self, dense: QueryCounter, u0: Tensor, target: Tensor, reference: str, threat: ThreatModel,
                 budget: int, task: Any, query_batch: int):
        self.dense, self.u0, self.threat, self.budget, self.task = dense, u0, threat, budget, task
        self.query_batch = query_batch
        self.size = u0.shape[-1]
        clean = dense(u0)
        self.target = task.reference(clean) if reference == "clean" else target
        self.spent = 1  # queries of each still-active image (they all spend alike)
        self.best_u = u0.clone()
        self.best_objective = task.blackbox_objective(clean, self.target)
        self.best_success = task.success(clean, self.target)
        self.active = ~self.best_success if task.early_stop else torch.ones_like(self.best_success)
        self.centre_objective = self.best_objective.clone()  # f(x) at each image's current iterate

    def _queries(self, delta: Tensor, image: Tensor, coordinate: Tensor | None = None,
                 offset: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """(x, objective, success) per forward pass of at most ``query_batch`` queries: query j is image
        ``image[j]`` at its delta, moved by ``offset[j]`` along flat coordinate ``coordinate[j]`` if given."""
        for start in range(0, len(image), self.query_batch):
            chunk = slice(start, start + self.query_batch)
            rows = image[chunk]
            variable = delta[rows]
            if coordinate is not None and offset is not None:
                flat = variable.view(len(rows), -1)
                flat[torch.arange(len(rows), device=flat.device), coordinate[chunk]] += offset[chunk]
            x = project_image(self.u0[rows], _upsample(variable, self.size), self.threat)
            logits = self.dense.copies_of(rows)(x)
            target = self.target[rows]
            yield x, self.task.blackbox_objective(logits, target), self.task.success(logits, target)

    def _centre(self, delta: Tensor) -> None:
        """One query per active image at its current iterate; update the best points and early stops."""
        image = self.active.nonzero()[:, 0]
        x, objective, success = (torch.cat(parts) for parts in zip(*self._queries(delta, image)))
        self.spent += 1
        self.centre_objective[image] = objective
        stops = success & bool(self.task.early_stop)
        better = (objective > self.best_objective[image]) | stops
        chosen = image[better]
        self.best_u[chosen] = x[better]
        self.best_objective[chosen] = objective[better]
        self.best_success[chosen] = success[better]
        self.active[image[stops]] = False

    def _differences(self, delta: Tensor, image: Tensor, chosen: Tensor, h: float) -> tuple[Tensor, Tensor]:
        """f(x + h e_i) and f(x - h e_i), (A, B) each, for the coordinates ``chosen`` (A, B) of ``image``."""
        b = chosen.shape[1]
        offset = torch.tensor([h, -h], dtype=delta.dtype, device=delta.device).repeat_interleave(b)
        parts = self._queries(delta, image.repeat_interleave(2 * b), chosen.repeat(1, 2).flatten(),
                              offset.repeat(len(image)))
        objective = torch.cat([f for _, f, _ in parts])
        self.spent += 2 * b
        f_plus, f_minus = objective.view(len(image), 2, b).unbind(1)
        return f_plus, f_minus

    def optimise(self, solver: str, coords: int, lr: float, h: float) -> None:
        """The hierarchical stages, each a loop of centre query, 2B differences and a coordinate update."""
        sizes = [s for s in STAGE_SIZES if s < self.size] + [self.size]
        n, channels = self.u0.shape[:2]
        b1, b2 = ADAM_BETAS
        delta = self.u0.new_zeros(n, channels, sizes[0], sizes[0])
        for stage, size in enumerate(sizes):
            delta = constrain_variable(_upsample(delta, size), self.size, self.threat)
            stage_end = self.spent + (self.budget - self.spent) // (len(sizes) - stage)
            dims = delta[0].numel()
            mean, var = delta.new_zeros(n, dims), delta.new_zeros(n, dims)
            adam_steps = torch.zeros(n, dims, dtype=torch.long, device=delta.device)
            stale = stage > 0  # at the first stage delta = 0 is the clean point, already queried
            while self.active.any():
                if stale:
                    if self.spent >= stage_end:
                        break
                    self._centre(delta)
                    stale = False
                    continue
                b = min(coords, (stage_end - self.spent - 1) // 2, dims)  # keep one query for the next centre
                if b < 1:
                    break
                image = self.active.nonzero()[:, 0]
                chosen = torch.multinomial(sampling_probability(delta[image]), b)  # (A, B)
                f_plus, f_minus = self._differences(delta, image, chosen, h)
                grad = (f_plus - f_minus) / (2 * h)
                if solver == "adam":
                    rows = image[:, None]
                    mean[rows, chosen] = b1 * mean[rows, chosen] + (1 - b1) * grad
                    var[rows, chosen] = b2 * var[rows, chosen] + (1 - b2) * grad ** 2
                    adam_steps[rows, chosen] += 1
                    t = adam_steps[rows, chosen].to(delta.dtype)
                    m_hat, v_hat = mean[rows, chosen] / (1 - b1 ** t), var[rows, chosen] / (1 - b2 ** t)
                    step = lr * m_hat / (v_hat.sqrt() + ADAM_EPS)
                else:
                    curvature = (f_plus - 2 * self.centre_objective[image, None] + f_minus) / h ** 2
                    step = torch.where(curvature < 0, -lr * grad / curvature.clamp(max=-1e-30), lr * grad)
                updated = delta[image].view(len(image), dims).scatter_add(1, chosen, step)
                delta[image] = constrain_variable(updated.view_as(delta[image]), self.size, self.threat)
                stale = True
