"""Our ZOO black-box attack (attacks/zoo.py): budget, queries, outputs only, saliency and classifiers."""
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from attacks import ATTACKS, ThreatModel
from benchmark.checks import check_budget
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.perf import digits, train_cnn
from benchmark.tasks import ClassificationTask, SaliencyTask
from benchmark.zoo import resolve_model

SALIENCY = SaliencyTask()
CLASSIFICATION = ClassificationTask()


class OutputsOnly(nn.Module):
    """Counts the rows it is queried on; fails if the attack could get a gradient through it."""

    def __init__(self, inner: nn.Module, tally: list[int] | None = None):
        super().__init__()
        self.inner = inner
        self.tally = [0] if tally is None else tally  # shared with the per-row views below

    @property
    def seen(self) -> int:
        return self.tally[0]

    def copies_of(self, index: Tensor) -> "OutputsOnly":
        inner = self.inner.copies_of(index) if hasattr(self.inner, "copies_of") else self.inner
        return OutputsOnly(inner, self.tally)

    def forward(self, u: Tensor) -> Tensor:
        assert not torch.is_grad_enabled() and not u.requires_grad, "a black-box attack asked for gradients"
        self.tally[0] += len(u)
        return self.inner(u)


class NoEarlyStop(ClassificationTask):
    early_stop = False


def _zoo(model, batch, threat, **params):
    torch.manual_seed(0)
    space = SALIENCY.attack_space(batch, threat)
    dense = OutputsOnly(SALIENCY.attacked_model(model, space))
    u0 = space.initial()
    out = ATTACKS["zoo"](dense, u0, batch.target, threat, SALIENCY, names=batch.names, **params)
    rgb, depth = space.compose(out.u)
    norms = check_budget(batch.names, batch.rgb, batch.depth, rgb, depth, threat)
    with torch.no_grad():
        before = SALIENCY.loss(model(batch.rgb, batch.depth), batch.target)
        after = SALIENCY.loss(model(rgb, depth), batch.target)
    assert out.info["queries"].sum().item() == dense.seen  # every query is recorded
    assert (out.info["queries"] <= threat.queries).all()
    return rgb, depth, before, after, out, norms


def test_trained_saliency_model_gets_worse_within_linf_budget(pinned_tiny):
    model = resolve_model("jldcf-tiny", str(pinned_tiny)).model.eval().requires_grad_(False)
    batch = make_batch([SyntheticRGBD("test")[i] for i in range(2)], model.input_size)
    threat = ThreatModel(eps=8 / 255, modality="rgbd", queries=100)
    _, _, before, after, out, norms = _zoo(model, batch, threat, coords=16)
    assert (after > before).all(), (before, after)
    assert (out.info["queries"] >= threat.queries - 1).all()  # no early stop for saliency: budget spent
    assert (norms["linf_rgb"] <= 8 / 255 + 1e-6).all() and (norms["linf_depth"] <= 8 / 255 + 1e-6).all()


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("solver", ["adam", "newton"])
def test_budget_holds_for_both_norms_and_solvers(norm, eps, solver, toy_model, toy_batch):
    threat = ThreatModel(norm=norm, eps=eps, modality="rgbd", queries=90)
    _, _, before, after, out, _ = _zoo(toy_model, toy_batch, threat, coords=8, solver=solver)
    assert (after >= before - 1e-6).all()  # the best centre is never worse than the clean image
    assert set(out.info) == {"queries", "success"} and out.info["success"].shape == (len(toy_batch.names),)


def test_outputs_only_even_for_an_input_that_requires_grad(toy_model, toy_batch):
    threat = ThreatModel(eps=8 / 255, queries=40)
    space = SALIENCY.attack_space(toy_batch, threat)
    dense = OutputsOnly(SALIENCY.attacked_model(toy_model, space))
    out = ATTACKS["zoo"](dense, space.initial().requires_grad_(True), toy_batch.target, threat, SALIENCY,
                         coords=4, reference="clean")
    assert dense.seen == out.info["queries"].sum().item() > len(toy_batch.names)
    assert not out.u.requires_grad


def test_depth_modality_leaves_rgb_unchanged(toy_model, toy_batch):
    threat = ThreatModel(eps=4 / 255, eps_depth=10 / 255, modality="depth", queries=60)
    rgb, depth, _, _, _, norms = _zoo(toy_model, toy_batch, threat, coords=8)
    assert torch.equal(rgb, toy_batch.rgb)
    assert 0 < norms["linf_depth"].max().item() <= 10 / 255 + 1e-6


def test_a_query_budget_is_required(toy_model, toy_batch):
    with pytest.raises(ValueError, match="query budget"):
        _zoo(toy_model, toy_batch, ThreatModel(eps=8 / 255))


@pytest.fixture(scope="module")
def digits_classifier():
    x_train, y_train, x_test, y_test = digits()
    model = train_cnn(x_train, y_train, epochs=3)
    with torch.no_grad():
        correct = model(x_test).argmax(1) == y_test
    return model, x_test[correct][:12], y_test[correct][:12]


def test_classifier_untargeted_success_and_early_stop_saves_queries(digits_classifier):
    model, x, y = digits_classifier
    threat = ThreatModel(norm="l2", eps=2.0, modality="rgb", queries=400, rel_step=0.1)
    runs = {}
    for name, task in (("early", CLASSIFICATION), ("full", NoEarlyStop())):
        torch.manual_seed(0)
        dense = OutputsOnly(model)
        runs[name] = ATTACKS["zoo"](dense, x, y, threat, task, coords=32)
        assert runs[name].info["queries"].sum().item() == dense.seen
    early, full = runs["early"], runs["full"]
    with torch.no_grad():
        fooled = model(early.u).argmax(1) != y
    assert fooled.float().mean() >= 0.5
    assert torch.equal(early.info["success"].bool(), fooled)
    assert ((early.u - x).flatten(1).norm(dim=1) <= 2.0 * (1 + 1e-5)).all()
    stopped = early.info["queries"] < threat.queries - 1
    assert fooled[stopped].all() and stopped.any()  # an image stops early only once misclassified
    assert (full.info["queries"] >= threat.queries - 1).all()
    assert early.info["queries"].sum() < 0.8 * full.info["queries"].sum()
    # reference="clean" attacks the clean prediction: the labels passed in do not matter
    torch.manual_seed(0)
    clean_ref = ATTACKS["zoo"](model, x, torch.zeros_like(y), threat, CLASSIFICATION, coords=32, reference="clean")
    assert torch.equal(clean_ref.u, early.u)
    np.testing.assert_array_equal(clean_ref.info["queries"].numpy(), early.info["queries"].numpy())
