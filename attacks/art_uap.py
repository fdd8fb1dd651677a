"""Universal adversarial perturbation through ART's ``UniversalPerturbation`` (Moosavi-Dezfooli et al.
2017, arXiv:1610.08401; Nicolae et al. 2018, arXiv:1807.01069): the second backend of :mod:`attacks.uap`,
for classifiers.

ART's algorithm: passes over the data (at most ``threat.steps``, fewer once a fraction 1 - ``delta`` of
the images is fooled), in random order; for each image the current noise does not fool, an inner attack
(``attacker``) on image + noise, and if that fools the model, noise <- Proj_eps(adv - image). With
``attacker: deepfool`` this is the paper's Algorithm 1: the inner step is DeepFool's minimal L2 step to
the nearest decision boundary (overshoot 0.02, as the paper's), accumulated and projected; the default
inner FGSM steps by ``threat.step_size`` in the cell's norm (ART's default of 0.3 would replace the
noise by one image's own step each time).

ART fits on arrays, not on batches, so :meth:`ARTUniversalPerturbation.fit` concatenates the train
split's views once and fits on all of them, and every test batch then gets that same perturbation:
x_adv = clip(x + noise, 0, 1). Running ART per test batch, as its ``generate`` does, would fit a new
"universal" perturbation to each batch with its test labels.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from art.attacks.evasion import UniversalPerturbation
from art.estimators.classification import PyTorchClassifier
from torch import Tensor, nn

from .art_backend import ART_NORMS, InputDtype
from .base import CLASSIFICATION, check_norm
from .threat import ThreatModel


class ARTUniversalPerturbation:
    backend = "art"
    norms = ("linf", "l2")
    tasks = CLASSIFICATION
    universal_kind = "perturbation"

    def fit(self, views: Callable[[], Iterator[tuple[nn.Module, Tensor, Tensor, list[str]]]], threat: ThreatModel,
            task: Any, *, attacker: str = "fgsm", attacker_params: dict[str, Any] | None = None,
            delta: float = 0.2, **params: Any) -> Tensor:
        """The universal noise (C,S,S) in attack space, fitted by ART on every train view's images at once.
        Other params the runner passes (``names``) are ignored."""
        check_norm("art-uap", self.norms, threat)
        batches = list(views())
        if not batches:
            raise ValueError("universal perturbation: the training split yielded no batches")
        # A classifier's view maps each image to its logits alone (no other per-batch input, unlike the
        # saliency view's clean depth): the first batch's view serves the concatenated train images.
        dense = batches[0][0]
        u0 = torch.cat([u for _, u, _, _ in batches])
        target = torch.cat([t for _, _, t, _ in batches])
        model = InputDtype(task.art_model(dense), u0.dtype)
        with torch.no_grad():
            nb_classes = model(batches[0][1]).shape[1]
        estimator = PyTorchClassifier(model=model, loss=task.art_loss(), input_shape=tuple(u0.shape[1:]),
                                      nb_classes=nb_classes, clip_values=(0.0, 1.0),
                                      device_type="gpu" if u0.is_cuda else "cpu")
        norm = ART_NORMS[threat.norm]
        stepped = {"eps": threat.step_size, "norm": norm}  # for the inner attacks that step by eps in a norm
        own = {"epsilon": 0.02, "verbose": False} if attacker == "deepfool" else stepped  # 0.02: the paper's overshoot
        inner = {**own, **(attacker_params or {})}
        attack = UniversalPerturbation(estimator, attacker=attacker, attacker_params=inner, delta=delta,
                                       max_iter=threat.steps, eps=threat.space_eps, norm=norm, batch_size=len(u0),
                                       verbose=False)
        attack.generate(x=u0.detach().cpu().numpy(), y=task.art_labels(target, nb_classes))
        return torch.from_numpy(attack.noise[0]).to(u0.device, u0.dtype)

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 universal: Tensor, **params: Any) -> Tensor:
        check_norm("art-uap", self.norms, threat)
        return (u0 + universal.to(u0)).clamp(0, 1)
