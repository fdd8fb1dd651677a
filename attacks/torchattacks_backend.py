"""torchattacks backend (Kim 2020, arXiv:2010.01950): any of its attacks by class name.

The task supplies the model view torchattacks expects (logits over a class axis) and the labels; the
threat model supplies eps, alpha = rel_step * eps, steps, the norm name ("Linf"/"L2"), Square's
iterations within the query budget (``n_queries``, see ``square_iterations``), for L0 attacks the
feature fraction ``gamma`` = eps / channels (so at most eps of the pixel positions change), and the
number of classes (``n_classes``, read from the model's output), each passed only where the class takes
it. The runner's ``seed`` reaches the attacks that take one (APGD, FAB, Square). AutoAttack has its own
module (``autoattack.py``). A black-box attack (Square) queries the model through the query counter
(``queries.py``), which records its queries per image.

JSMA in torchattacks is targeted; untargeted, it aims at (y + 1) mod 10, which is a wrong class index
for any other number of classes, so it runs targeted at (y + 1) mod K here. Minimum-norm attacks (C&W,
DeepFool, JSMA, FAB) are kept only where their perturbation fits the budget (see ``within_budget``).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torchattacks
from torch import Tensor, nn

from .base import ALL_TASKS, AttackOutput, check_norm, within_budget
from .queries import counted
from .threat import ThreatModel

NORM_NAMES = {"linf": "Linf", "l2": "L2"}


def square_iterations(queries: int, restarts: int) -> int:
    """Square's ``n_queries`` within ``queries``: it is the number of iterations of each restart (one query
    per image still robust), and Square also queries every image once before the restarts (is it robust?)
    and twice per restart (its starting point; the result)."""
    iterations = (queries - 1) // restarts - 2
    if iterations < 1:
        raise ValueError(f"Square: {queries} queries are too few for one iteration")
    return iterations


class TorchattacksAttack:
    backend = "torchattacks"

    def __init__(self, cls_name: str, norms: str | tuple[str, ...], minimum_norm: bool = False,
                 tasks: tuple[str, ...] = ALL_TASKS, black_box: bool = False, **defaults: Any):
        self.cls = getattr(torchattacks, cls_name)
        self.norms = (norms,) if isinstance(norms, str) else norms
        self.minimum_norm, self.tasks, self.black_box, self.defaults = minimum_norm, tasks, black_box, defaults

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor | AttackOutput:
        check_norm(self.cls.__name__, self.norms, threat)
        accepted = inspect.signature(self.cls.__init__).parameters
        counter = counted(dense, u0, threat.queries) if self.black_box else None
        model = task.torchattacks_model(counter or dense)
        budget: dict[str, Any] = {"eps": threat.space_eps, "alpha": threat.step_size, "steps": threat.steps,
                                  "norm": NORM_NAMES.get(threat.norm), "gamma": threat.eps / u0.shape[1]}
        if threat.queries is not None:
            budget["n_queries"] = square_iterations(threat.queries, {**self.defaults, **params}.get("n_restarts", 1))
        if "n_classes" in accepted or self.cls is torchattacks.JSMA:
            with torch.no_grad():
                budget["n_classes"] = model(u0).shape[1]
        kwargs = {k: v for k, v in {**budget, **self.defaults, **params}.items() if k in accepted}
        attack = self.cls(model, **kwargs)
        if self.cls is torchattacks.JSMA:
            k = budget["n_classes"]
            attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % k)
        u = attack(u0, task.torchattacks_labels(target)).detach()
        if counter is None:
            return within_budget(dense, u0, u, target, threat, task) if self.minimum_norm else u
        return AttackOutput(u, {"queries": counter.per_image(u0)})
