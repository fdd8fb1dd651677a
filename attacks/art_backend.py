"""Adversarial Robustness Toolbox backend (Nicolae et al. 2018, arXiv:1807.01069).

ART has no dense-prediction estimator, so the task wraps its model as a ``PyTorchClassifier`` over
flattened outputs with its own loss. Labels are always passed (ART would otherwise take argmax
predictions as labels, which is meaningless for a dense map). ART draws its randomness from numpy.
The threat model gives norm, eps, eps_step, max_iter (steps), and for L0 attacks the feature fraction
``gamma`` = eps / channels, each where the class takes it. Minimum-norm attacks (CarliniL2Method,
DeepFool, SaliencyMapMethod, ZooAttack, HopSkipJump) are kept only where their perturbation fits the
budget (see ``within_budget``).

Black-box attacks (SquareAttack, ZooAttack, HopSkipJump) query the model through the query counter
(``queries.py``), which records their queries per image and refuses any past ``threat.queries``. None of
the three takes a budget in queries, so their iterations are derived from it by what ART spends per
iteration (art 1.20; see ``square_iterations``, ``zoo_iterations``, ``hop_skip_jump_schedule``); without a
budget they run ``steps`` iterations, counted. SquareAttack's repeated questions about a point it
already asked about are answered from the counter's memory (see ``queries.py``). ZooAttack (batch_size=1) and HopSkipJump attack one image
at a time, so they are run one image at a time and charged to it; HopSkipJump's spending depends on the
image (random starting points, binary and step-size searches), so it is stopped when the budget runs
out and keeps its current point on the boundary (:class:`StoppableHopSkipJump`).
"""
from __future__ import annotations

import inspect
import math
from contextlib import nullcontext
from unittest import mock
from typing import Any

import numpy as np
import torch
from art.attacks import evasion
from art.estimators.classification import PyTorchClassifier
from torch import Tensor, nn

from .base import ALL_TASKS, AttackOutput, check_norm, within_budget
from .queries import QueryBudgetExceeded, QueryCounter, counted
from .threat import ThreatModel

ART_NORMS = {"linf": np.inf, "l2": 2}
PROBE = 1  # the query per image that reads the number of classes off the model, before ART runs
SUCCESS_LOG = 2  # ZooAttack and HopSkipJump predict x and x_adv once more to log their success rate


def square_iterations(queries: int, restarts: int) -> int:
    """SquareAttack's max_iter within ``queries``: after the probe, each restart queries its first candidate
    and each iteration its new one, per image still robust. ART also asks each current point again (is it
    robust? its loss?), which the counter answers from memory (``QueryCounter.remembering``)."""
    iterations = (queries - PROBE) // restarts - 1
    if iterations < 1:
        raise ValueError(f"SquareAttack: {queries} queries are too few for one iteration")
    return iterations


def zoo_iterations(queries: int, binary_search_steps: int, nb_parallel: int) -> int:
    """ZooAttack's max_iter within ``queries`` (batch_size=1): each iteration of each binary-search step
    predicts 2 nb_parallel coordinate copies and the new iterate, after the probe and before the success log."""
    iterations = (queries - PROBE - SUCCESS_LOG) // (binary_search_steps * (2 * nb_parallel + 1))
    if iterations < 1:
        raise ValueError(f"ZooAttack: {queries} queries are too few for one iteration")
    return iterations


def hop_skip_jump_schedule(queries: int, steps: int, dims: int, norm: float) -> dict[str, int]:
    """HopSkipJump's max_iter, init_eval and max_eval whose expected queries fit ``queries``: ART caps only
    the gradient samples of one iteration (``max_eval``), and iteration t takes init_eval sqrt(t+1) of them
    plus a binary search to the boundary (log2(1/theta) queries, theta = 0.01/sqrt(d) for L2, 0.01/d for
    L-inf) and a step-size search (taken as 2). Before the first iteration: the probe, one prediction of
    x, one random starting point (more only when it is not adversarial) and its binary search (threshold
    0.001); after the last, the success log. Up to ``steps`` iterations, each with at least one sample."""
    theta = 0.01 / math.sqrt(dims) if norm == 2 else 0.01 / dims
    search = math.ceil(math.log2(1 / theta))
    before = PROBE + 1 + 1 + math.ceil(math.log2(1 / 0.001)) + SUCCESS_LOG
    iterations = min(steps, (queries - before) // (search + 3))
    if iterations < 1:
        raise ValueError(f"HopSkipJump: {queries} queries are too few for one iteration "
                         f"(at least {before + search + 3})")
    samples = queries - before - iterations * (search + 2)
    init_eval = max(1, int(samples / sum(math.sqrt(t + 1) for t in range(iterations))))
    return {"max_iter": iterations, "init_eval": init_eval, "max_eval": int(init_eval * math.sqrt(iterations))}


class StoppableHopSkipJump(evasion.HopSkipJump):
    """ART's HopSkipJump (Chen, Jordan & Wainwright 2020, arXiv:1904.02144) that remembers its current
    adversarial point, the result of its latest binary search to the boundary: when the query budget runs
    out mid-iteration, ART's loop is left by the counter's exception and the image keeps that point."""

    boundary: np.ndarray | None = None

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        self.boundary = None
        return super().generate(x, y, **kwargs)

    def _binary_search(self, *args: Any, **kwargs: Any) -> np.ndarray:
        self.boundary = super()._binary_search(*args, **kwargs)
        return self.boundary

    def _init_sample(self, *args: Any, **kwargs: Any) -> Any:
        """ART draws the random starting points from an unseeded ``np.random.RandomState()`` (OS entropy),
        which the cell's seed cannot fix: it gets a generator seeded from numpy's global RNG instead, which
        the runner seeds per batch, so the cell is reproducible."""
        seeded = np.random.RandomState(np.random.randint(2**31))
        with mock.patch.object(np.random, "RandomState", return_value=seeded):
            return super()._init_sample(*args, **kwargs)


OVERRIDES = {"HopSkipJump": StoppableHopSkipJump}
PER_IMAGE = (evasion.ZooAttack, StoppableHopSkipJump)  # attack one image at a time anyway


def _square_hooks(dense: nn.Module, u0: Tensor, task: Any) -> dict[str, Any]:
    """SquareAttack minimises ``loss(x, y)`` per sample and stops a sample once ``adv_criterion`` holds.
    For a dense task (no early stop) we minimise the negated task objective and never stop: the query
    budget is spent in full. A classifier keeps ART's own margin loss and success criterion. Queries
    arrive in the attacked input's dtype, as through the estimator (``InputDtype``)."""

    def loss(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = dense(torch.from_numpy(x).to(u0.device, u0.dtype))
            y_t = torch.from_numpy(y).to(u0.device).view_as(logits)
            return -task.loss(logits, y_t).cpu().numpy()

    return {"loss": loss, "adv_criterion": lambda y_pred, y: np.zeros(len(y), dtype=bool)}


class InputDtype(nn.Module):
    """Casts ART's queries to the attacked input's dtype: some attacks (HopSkipJump) compute in float64
    and query with it."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner, dtype
        self.train(inner.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.to(self.dtype))


class ARTAttack:
    backend = "art"

    def __init__(self, cls_name: str, norms: tuple[str, ...] = ("linf", "l2"), minimum_norm: bool = False,
                 tasks: tuple[str, ...] = ALL_TASKS, targeted_only: bool = False, black_box: bool = False,
                 **defaults: Any):
        """``targeted_only``: the class reads ``y`` as the target (SaliencyMapMethod), so it is given the
        next class (y + 1) mod K, as torchattacks' JSMA does. ``black_box``: queries are counted and
        budgeted (see the module)."""
        self.cls = OVERRIDES.get(cls_name) or getattr(evasion, cls_name)
        self.norms = norms
        self.minimum_norm, self.tasks, self.targeted_only, self.defaults = minimum_norm, tasks, targeted_only, defaults
        self.black_box = black_box

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor | AttackOutput:
        check_norm(self.cls.__name__, self.norms, threat)
        counter = counted(dense, u0, threat.queries) if self.black_box else None
        with counter.remembering() if counter is not None and self.cls is evasion.SquareAttack else nullcontext():
            return self._run(dense, counter, u0, target, threat, task, params)

    def _run(self, dense: nn.Module, counter: QueryCounter | None, u0: Tensor, target: Tensor,
             threat: ThreatModel, task: Any, params: dict[str, Any]) -> Tensor | AttackOutput:
        model = InputDtype(task.art_model(counter or dense), u0.dtype)
        with torch.no_grad():
            nb_classes = model(u0).shape[1]  # the whole batch: a view may hold per-image state
        estimator = PyTorchClassifier(
            model=model,
            loss=task.art_loss(),
            input_shape=tuple(u0.shape[1:]),
            nb_classes=nb_classes,
            clip_values=(0.0, 1.0),
            device_type="gpu" if u0.is_cuda else "cpu",
        )
        kwargs: dict[str, Any] = {
            "norm": ART_NORMS.get(threat.norm), "eps": threat.space_eps, "eps_step": threat.step_size,
            "max_iter": threat.steps, "batch_size": len(u0), "verbose": False, "gamma": threat.eps / u0.shape[1],
        }
        if self.cls is evasion.SquareAttack and not task.early_stop:
            kwargs.update(_square_hooks(counter or dense, u0, task))
        kwargs = {**kwargs, **self.defaults, **params}
        if counter is not None and threat.queries is not None:
            kwargs.update(self._iterations(threat, kwargs, int(np.prod(u0.shape[1:]))))
        accepted = inspect.signature(self.cls.__init__).parameters
        attack = self.cls(estimator, **{k: v for k, v in kwargs.items() if k in accepted})
        labels = (target + 1) % nb_classes if self.targeted_only else target
        x, y = u0.detach().cpu().numpy(), task.art_labels(labels, nb_classes)
        per_image = counter is not None and isinstance(attack, PER_IMAGE)
        x_adv = self._per_image(attack, counter, x, y) if per_image else attack.generate(x=x, y=y)
        u = torch.from_numpy(x_adv).to(u0.device, u0.dtype)
        # the check of the result is the benchmark's, not one of the attack's queries
        out = within_budget(counter.inner if counter else dense, u0, u, target, threat, task) if self.minimum_norm \
            else AttackOutput(u)
        if counter is not None:
            out.info["queries"] = counter.per_image(u0)
        return out

    def _iterations(self, threat: ThreatModel, kwargs: dict[str, Any], dims: int) -> dict[str, int]:
        """The iteration counts that keep this black-box class within ``threat.queries``."""
        queries = int(threat.queries)
        defaults = inspect.signature(self.cls.__init__).parameters

        def param(name: str) -> Any:
            return kwargs.get(name, defaults[name].default)

        if self.cls is evasion.SquareAttack:
            return {"max_iter": square_iterations(queries, param("nb_restarts"))}
        if self.cls is evasion.ZooAttack:
            return {"max_iter": zoo_iterations(queries, param("binary_search_steps"), param("nb_parallel"))}
        return hop_skip_jump_schedule(queries, threat.steps, dims, param("norm"))

    @staticmethod
    def _per_image(attack: Any, counter: QueryCounter, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``attack`` on one image at a time, its queries charged to that image; HopSkipJump stopped by
        the budget keeps its current point on the boundary (the clean image before it has one)."""
        rows = []
        for i in range(len(x)):
            try:
                with counter.charging(i):
                    rows.append(attack.generate(x=x[i:i + 1], y=y[i:i + 1]))
            except QueryBudgetExceeded:
                if not isinstance(attack, StoppableHopSkipJump):
                    raise
                rows.append(x[i:i + 1] if attack.boundary is None else attack.boundary[None].astype(x.dtype))
        return np.concatenate(rows)
