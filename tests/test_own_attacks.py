"""Our own attacks (JSMA-style L0, C&W-style L2, universal perturbation): budgets hold and the
objective they target gets worse, on a briefly trained tiny JL-DCF and on a small classifier."""
import numpy as np
import pytest
import torch
from torch import nn

from attacks import ATTACKS, ThreatModel
from attacks.base import as_output
from benchmark.checks import BudgetViolation, check_budget
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.tasks import ClassificationTask, SaliencyTask
from models import build_model
from models.base import load_state_dict_file

TASK = SaliencyTask()


@pytest.fixture(scope="module")
def tiny(pinned_tiny):
    m = build_model("jldcf-tiny")
    m.load_strict(load_state_dict_file(pinned_tiny), str(pinned_tiny))
    return m.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def test_batch():
    ds = SyntheticRGBD("test")
    return make_batch([ds[i] for i in range(8)], 128)


def _run(name, model, batch, threat, **params):
    torch.manual_seed(0)
    space = TASK.attack_space(batch, threat)
    dense = TASK.attacked_model(model, space)
    out = as_output(ATTACKS[name](dense, space.initial(), batch.target, threat, TASK, names=batch.names, **params))
    rgb, depth = space.compose(out.u)
    norms = check_budget(batch.names, batch.rgb, batch.depth, rgb, depth, threat, out.mask)
    with torch.no_grad():
        clean, adv = model(batch.rgb, batch.depth), model(rgb, depth)
    return out, rgb, depth, norms, clean, adv


def test_jsma_spends_its_l0_budget_and_raises_the_loss(tiny, test_batch):
    for modality in ("rgb", "depth", "rgbd"):
        th = ThreatModel(norm="l0", eps=0.02, modality=modality, steps=4)
        _, rgb, depth, norms, clean, adv = _run("jsma", tiny, test_batch, th)
        assert torch.equal(depth, test_batch.depth) if modality == "rgb" else torch.equal(rgb, test_batch.rgb) if modality == "depth" else True
        assert (norms["l0"] <= 0.02 + 1e-9).all() and (norms["l0"] > 0).float().mean() >= 0.5
        before, after = TASK.loss(clean, test_batch.target), TASK.loss(adv, test_batch.target)
        assert (after >= before - 1e-6).all() and after.mean() > before.mean() + 0.005, (modality, before, after)


def test_l0_and_patch_budgets_are_checked(test_batch):
    b = test_batch
    rgb = b.rgb.clone()
    rgb[:, :, :20, :20] = 1 - rgb[:, :, :20, :20]  # 400 of 16384 pixels, 2.4%
    with pytest.raises(BudgetViolation, match=b.names[0]):
        check_budget(b.names, b.rgb, b.depth, rgb, b.depth, ThreatModel(norm="l0", eps=0.02, modality="rgb"))
    check_budget(b.names, b.rgb, b.depth, rgb, b.depth, ThreatModel(norm="l0", eps=0.025, modality="rgb"))
    mask = torch.zeros_like(b.depth, dtype=torch.bool)
    mask[:, :, :20, :20] = True
    patch = ThreatModel(norm="patch", eps=0.025, modality="rgb")
    check_budget(b.names, b.rgb, b.depth, rgb, b.depth, patch, mask)
    with pytest.raises(BudgetViolation):  # pixels changed outside the mask
        check_budget(b.names, b.rgb, b.depth, rgb, b.depth, patch, mask.roll(5, -1))
    with pytest.raises(BudgetViolation):  # mask larger than the area budget
        check_budget(b.names, b.rgb, b.depth, rgb, b.depth, ThreatModel(norm="patch", eps=0.02, modality="rgb"), mask)
    with pytest.raises(BudgetViolation):  # depth is outside an rgb patch threat
        check_budget(b.names, b.rgb, b.depth, rgb, b.depth * 0.9, patch, mask)


def test_cw_stays_in_the_l2_ball_and_breaks_the_map(tiny, test_batch):
    th = ThreatModel(norm="l2", eps=2.0, modality="rgbd", steps=8)
    out, _, _, norms, clean, adv = _run("cw", tiny, test_batch, th, search_steps=2, lr=0.05)
    total = torch.sqrt(norms["l2_rgb"] ** 2 + norms["l2_depth"] ** 2)
    assert (total <= 2.0 * (1 + 1e-5)).all()
    assert TASK.cw_objective(adv, test_batch.target).mean() < TASK.cw_objective(clean, test_batch.target).mean()
    assert torch.equal(out.info["success"].bool(), TASK.success(adv, test_batch.target))


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, 5)

    def forward(self, u):
        return self.fc(u.flatten(1))


def test_cw_on_a_classifier_finds_small_successful_perturbations():
    task, model = ClassificationTask(), Linear().eval().requires_grad_(False)
    u0 = torch.rand(16, 3, 8, 8)
    label = model(u0).argmax(1)
    th = ThreatModel(norm="l2", eps=10.0, modality="rgb", steps=30)
    torch.manual_seed(0)
    out = ATTACKS["cw"](model, u0, label, th, task, search_steps=4, lr=0.05)
    ok = out.info["success"].bool()
    assert ok.float().mean() > 0.8
    assert torch.equal(model(out.u).argmax(1) != label, ok)
    norms = (out.u - u0).flatten(1).norm(dim=1)[ok]
    assert (norms < 5.0).all()  # the binary search keeps perturbations far inside the generous budget


def test_universal_perturbation_is_one_delta_for_all_images(tiny, test_batch):
    ds = SyntheticRGBD("train")
    train = [make_batch([ds[i] for i in range(j, j + 8)], 128) for j in (0, 8)]
    th = ThreatModel(eps=8 / 255, modality="rgbd", steps=1)

    def views():
        for b in train:
            space = TASK.attack_space(b, th)
            yield TASK.attacked_model(tiny, space), space.initial(), b.target, b.names

    torch.manual_seed(0)
    delta = ATTACKS["uap"].fit(views, th, TASK, epochs=2)
    assert delta.shape == (4, 128, 128) and delta.abs().max() <= th.space_eps + 1e-7
    _, rgb, _, norms, clean, adv = _run("uap", tiny, test_batch, th, universal=delta)
    assert (norms["linf_rgb"] <= 8 / 255 + 1e-6).all()
    inside = (test_batch.rgb > 0.05) & (test_batch.rgb < 0.95)  # no clipping there: the same delta everywhere
    moved = (rgb - test_batch.rgb)[inside[:1].expand_as(inside) & inside]
    assert moved.abs().max() <= 8 / 255 + 1e-6
    diff = rgb - test_batch.rgb
    both = inside[0] & inside[1]
    assert torch.allclose(diff[0][both], diff[1][both], atol=1e-5)
    assert TASK.loss(adv, test_batch.target).mean() > TASK.loss(clean, test_batch.target).mean()


def test_l0_threat_validates_its_fraction():
    with pytest.raises(ValueError, match="fraction"):
        ThreatModel(norm="l0", eps=2.0)
    with pytest.raises(ValueError, match="eps_depth"):
        ThreatModel(norm="patch", eps=0.05, eps_depth=0.1)
    assert np.isclose(ThreatModel(norm="patch", eps=0.05).space_eps, 0.05)
