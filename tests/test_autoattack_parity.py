"""Parity of the suite's AutoAttack (``ATTACKS["autoattack"]``, attacks/autoattack.py: torchattacks' APGD,
APGDT, FAB and Square configured as the reference's standard version) with the reference AutoAttack
(fra31/auto-attack, Croce & Hein 2020), and of torchattacks' parts with the reference's.

Skipped unless ``AUTOATTACK_SRC`` names a checkout of the reference repository (the directory holding
``autoattack/autoattack.py``); nothing from it is part of this repository. Model: the digits CNN of
tests/test_classification.py (4 epochs, seen through ``GreyInput`` on 3-channel [0,1] images), the first
N_IMAGES test images (clean-misclassified ones included), seed 0 for both libraries.

What differs (torchattacks 3.5.1 against reference a39220048b3c, Jan 2023):
* ``torchattacks.AutoAttack`` itself is not the reference's attack: it builds APGD, APGDT and FAB without
  ``steps``, so they run 10 steps (attacks/autoattack.py:61-88; reference: 100, autoattack.py:33-48),
  targets n_classes - 1 classes (reference: 9) and keeps Square's ``resc_schedule=True`` (square.py:56;
  reference: False, autoattack.py:42-43). Our StandardAutoAttack sets all three as the reference does.
* same otherwise: order apgd-ce, apgd-t, fab-t, square; 1 restart each; every sub-attack reseeds
  ``torch.random.manual_seed(seed)`` at the start of ``perturb`` and runs only on the points still robust
  (MultiAttack in torchattacks, robust_flags in the reference); losses (CE, targeted DLR), step schedule
  (2 eps, rho 0.75, checkpoints 0.22/0.06/0.03 n_iter) and FAB projections alike.
* L2 only, two torchattacks deviations from the reference code: APGDT steps every image with the first
  image's step size (``step_size[0]``, apgdt.py:200; reference autopgd_base.py:337), and Square's L2
  update takes the whole-image norm of the two windows (``self.lp_norm(...)``, square.py:348) where the
  reference takes the per-channel window norm (square.py:360-361). Fixing either line in a copy gives the
  reference's output (to 2.4e-7 and exactly).
* float order of operations in APGD's random start and L2 normalisation (e.g. ``eps * t / m`` against
  ``eps * (t / m)``) gives differences of an ulp (<= 2.4e-7), which 100 iterations can grow (6e-4 L2, 1.3e-3
  Linf on 2 images) without changing which images are robust.

Measured on 200 test images (clean accuracy 0.92), seed 0; robust accuracy reference / ours: Linf eps
0.075: 0.395 / 0.395 with identical robust flags (torchattacks.AutoAttack as it is: 0.400, 1 image
robust only there); L2 eps 1.5: 0.350 / 0.350, agreement 1.0, max |x_ref - x_ours| 6e-4. Sub-attacks
alone: APGD-CE, APGD-T (10 and 100 steps), FAB-T and Square (5000, resc False) give the same robust
flags on Linf, FAB-T and Square bit-identical, APGD max |diff| 1.2e-7 (10 steps); L2: APGD-CE same flags,
FAB-T identical, APGD-T (10 steps) 0.360 / 0.355, Square 0.525 / 0.575. Both keep every x_adv in [0,1]
within eps.

Here: sub-attacks at 10 steps (Square: 300 queries, resc_schedule False in both) must match to 1e-6
(APGD) or exactly (FAB-T, Square Linf); the two L2 deviations are strict xfails. The full standard
AutoAttack as the suite runs it must stay within the budget and call the same images robust as the
reference (L2: all but at most one).
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torchattacks
from torch import Tensor

from attacks import ATTACKS, ThreatModel
from attacks.autoattack import StandardAutoAttack
from benchmark.perf import digits, train_cnn
from benchmark.tasks import ClassificationTask

AUTOATTACK_SRC = os.environ.get("AUTOATTACK_SRC", "")
N_IMAGES = 48
SEED = 0
EPS = {"Linf": 0.075, "L2": 1.5}  # robust accuracy ~0.4 on this CNN
SUB_STEPS = 10  # sub-attacks alone: fewer steps than the reference's 100, to stay fast
SQUARE_QUERIES = 300
MAX_DISAGREEING = {"Linf": 0, "L2": 1}  # images robust under one only; measured 0 of 200 for both

pytestmark = pytest.mark.skipif(
    not (AUTOATTACK_SRC and (Path(AUTOATTACK_SRC) / "autoattack" / "autoattack.py").is_file()),
    reason="set AUTOATTACK_SRC to a fra31/auto-attack checkout to run the parity check")


class GreyInput(torch.nn.Module):
    """An RGB classifier from the grey digits CNN (as in tests/test_classification.py)."""

    def __init__(self, cnn: torch.nn.Module):
        super().__init__()
        self.cnn = cnn

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn(x.mean(1, keepdim=True))


@pytest.fixture(scope="module")
def ref() -> dict[str, ModuleType]:
    sys.path.insert(0, str(Path(AUTOATTACK_SRC).resolve()))
    try:
        return {name: importlib.import_module(f"autoattack.{name}")
                for name in ("autoattack", "autopgd_base", "fab_pt", "square")}
    finally:
        sys.path.pop(0)


@pytest.fixture(scope="module")
def digits_model():
    x_train, y_train, x_test, y_test = digits()
    model = GreyInput(train_cnn(x_train, y_train, epochs=4)).eval()
    return model, x_test[:N_IMAGES].repeat(1, 3, 1, 1).contiguous(), y_test[:N_IMAGES]


def _robust(model, x_adv: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def _assert_in_budget(x_adv: Tensor, x: Tensor, norm: str, eps: float) -> None:
    delta = (x_adv - x).reshape(len(x), -1)
    size = delta.abs().max(1)[0] if norm == "Linf" else delta.norm(dim=1)
    assert size.max().item() <= eps * (1 + 1e-5), f"{norm} perturbation {size.max().item()} > {eps}"
    assert x_adv.min().item() >= 0 and x_adv.max().item() <= 1


def _pair(ref, name: str, model, norm: str, eps: float):
    """(reference attack's perturb, torchattacks attack) with matched hyperparameters and seed."""
    apgd, fab, square = ref["autopgd_base"], ref["fab_pt"], ref["square"]
    if name == "apgd-ce":
        return (apgd.APGDAttack(model, n_iter=SUB_STEPS, norm=norm, n_restarts=1, eps=eps, seed=SEED, loss="ce",
                                device="cpu").perturb,
                torchattacks.APGD(model, norm=norm, eps=eps, steps=SUB_STEPS, n_restarts=1, seed=SEED, loss="ce"))
    if name == "apgd-t":
        return (apgd.APGDAttack_targeted(model, n_iter=SUB_STEPS, norm=norm, n_restarts=1, eps=eps, seed=SEED,
                                         n_target_classes=9, device="cpu").perturb,
                torchattacks.APGDT(model, norm=norm, eps=eps, steps=SUB_STEPS, n_restarts=1, seed=SEED, n_classes=10))
    if name == "fab-t":
        return (fab.FABAttack_PT(model, norm=norm, n_restarts=1, n_iter=SUB_STEPS, eps=eps, seed=SEED, targeted=True,
                                 n_target_classes=9, device="cpu").perturb,
                torchattacks.FAB(model, norm=norm, eps=eps, steps=SUB_STEPS, n_restarts=1, seed=SEED,
                                 multi_targeted=True, n_classes=10))
    return (square.SquareAttack(model, p_init=0.8, n_queries=SQUARE_QUERIES, eps=eps, norm=norm, n_restarts=1,
                                seed=SEED, resc_schedule=False, device="cpu").perturb,
            torchattacks.Square(model, norm=norm, eps=eps, n_queries=SQUARE_QUERIES, n_restarts=1, p_init=0.8,
                                resc_schedule=False, seed=SEED))


TOLERANCE = {"apgd-ce": 1e-6, "apgd-t": 1e-6, "fab-t": 0.0, "square": 0.0}  # measured <= 2.4e-7, 0, 0
KNOWN_L2 = {
    "apgd-t": "torchattacks APGDT steps every image with step_size[0] under L2 (apgdt.py:200)",
    "square": "torchattacks Square's L2 window norm is the whole-image norm (square.py:348)",
}
SUB_CASES = [pytest.param(norm, name, id=f"{name}-{norm}",
                          marks=[pytest.mark.xfail(strict=True, reason=KNOWN_L2[name])]
                          if norm == "L2" and name in KNOWN_L2 else [])
             for norm in EPS for name in TOLERANCE]


@pytest.mark.parametrize("norm,name", SUB_CASES)
def test_sub_attack_matches_the_reference(ref, digits_model, norm, name):
    model, x, y = digits_model
    eps = EPS[norm]
    perturb, attack = _pair(ref, name, model, norm, eps)
    x_ref, x_ta = perturb(x.clone(), y.clone()), attack(x, y)
    _assert_in_budget(x_ref, x, norm, eps)
    _assert_in_budget(x_ta, x, norm, eps)
    assert torch.equal(_robust(model, x_ref, y), _robust(model, x_ta, y))
    diff = (x_ref - x_ta).abs().max().item()
    assert diff <= TOLERANCE[name], f"{name} {norm}: max |x_ref - x_ta| = {diff}"


@pytest.mark.parametrize("norm", list(EPS))
def test_standard_autoattack_as_the_suite_runs_it_agrees_with_the_reference(ref, digits_model, norm):
    model, x, y = digits_model
    eps = EPS[norm]
    reference = ref["autoattack"].AutoAttack(model, norm=norm, eps=eps, version="standard", seed=SEED, device="cpu",
                                             verbose=False)
    x_ref = reference.run_standard_evaluation(x.clone(), y.clone(), bs=250)
    threat = ThreatModel(norm=norm.lower(), eps=eps, modality="rgb", steps=StandardAutoAttack.default_steps)
    x_ta = ATTACKS["autoattack"](model, x, y, threat, ClassificationTask(), seed=SEED)
    _assert_in_budget(x_ref, x, norm, eps)
    _assert_in_budget(x_ta, x, norm, eps)
    r_ref, r_ta = _robust(model, x_ref, y), _robust(model, x_ta, y)
    clean = _robust(model, x, y)
    assert not (r_ref & ~clean).any() and not (r_ta & ~clean).any()
    assert 0.1 < r_ref.float().mean().item() < 0.9  # the comparison says something
    disagreeing = (r_ref != r_ta).sum().item()
    assert disagreeing <= MAX_DISAGREEING[norm], (
        f"{norm}: robust accuracy {r_ref.float().mean():.3f} (reference) against {r_ta.float().mean():.3f}, "
        f"{disagreeing} of {len(x)} images disagree")
