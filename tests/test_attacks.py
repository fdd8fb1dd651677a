import numpy as np
import pytest
import torch

from attacks import ATTACKS, AttackSpace, ThreatModel
from attacks.base import as_output
from benchmark.checks import BudgetViolation, check_budget, model_fingerprint
from benchmark.tasks import SaliencyTask

TASK = SaliencyTask()
GRADIENT_ATTACKS = ["fgsm", "bim", "pgd", "mifgsm", "rfgsm", "difgsm", "nifgsm", "vmifgsm", "eotpgd",
                    "art-fgm", "art-pgd"]


def _attack(name, model, batch, threat, **params):
    torch.manual_seed(0)
    np.random.seed(0)
    space = TASK.attack_space(batch, threat)
    dense = TASK.attacked_model(model, space)
    u0 = space.initial()
    u_adv = as_output(ATTACKS[name](dense, u0, batch.target, threat, TASK, **params)).u
    rgb, depth = space.compose(u_adv)
    with torch.no_grad():
        before = TASK.loss(dense(u0), batch.target).mean().item()
        after = TASK.loss(model(rgb, depth), batch.target).mean().item()
    return rgb, depth, before, after


def test_attack_space_round_trip_and_scaling(toy_batch):
    th = ThreatModel(eps=4 / 255, eps_depth=12 / 255, modality="rgbd")
    space = AttackSpace(toy_batch.rgb, toy_batch.depth, th)
    u0 = space.initial()
    assert u0.shape[1] == 4 and th.space_eps == 4 / 255
    rgb, depth = space.compose(u0)
    assert torch.allclose(rgb, toy_batch.rgb, atol=1e-6) and torch.allclose(depth, toy_batch.depth, atol=1e-6)
    # a step of E in attack space is a step of eps_depth in depth
    _, d = space.compose(u0 + th.space_eps)
    moved = (d - toy_batch.depth)[toy_batch.depth < 0.9]
    assert torch.allclose(moved, torch.full_like(moved, 12 / 255), atol=1e-5)


def _random_sign_gain(model, batch, th):
    """How much the objective changes under random noise on the attacked modalities (L-inf: +-eps per
    pixel; L2: a random direction of norm eps per image): the bar an attack must clear (a no-op gains 0)."""
    g = torch.Generator().manual_seed(1)
    def noisy(x, eps):
        if not eps:
            return x
        if th.norm == "linf":
            return (x + eps * (torch.randint(0, 2, x.shape, generator=g) * 2 - 1)).clamp(0, 1)
        d = torch.randn(x.shape, generator=g)
        return (x + eps * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
    with torch.no_grad():
        before = TASK.loss(model(batch.rgb, batch.depth), batch.target).mean()
        after = TASK.loss(model(noisy(batch.rgb, th.budget("rgb")), noisy(batch.depth, th.budget("depth"))),
                          batch.target).mean()
    return (after - before).abs().item()


@pytest.mark.parametrize("name", GRADIENT_ATTACKS + ["art-square"])
@pytest.mark.parametrize("modality", ["rgb", "depth", "rgbd"])
def test_budget_holds_and_other_modality_untouched(name, modality, toy_model, toy_batch):
    black_box = name == "art-square"
    th = ThreatModel(eps=4 / 255, eps_depth=10 / 255, modality=modality, steps=200 if black_box else 3)
    rgb, depth, before, after = _attack(name, toy_model, toy_batch, th)
    check_budget(toy_batch.names, toy_batch.rgb, toy_batch.depth, rgb, depth, th)
    d_rgb = (rgb - toy_batch.rgb).abs().amax().item()
    d_depth = (depth - toy_batch.depth).abs().amax().item()
    assert d_rgb <= 4 / 255 + 1e-6 and d_depth <= 10 / 255 + 1e-6
    assert (d_rgb > 0) == (modality != "depth") and (d_depth > 0) == (modality != "rgb")  # every attacked one moved
    assert (d_rgb == 0) == (modality == "depth") and (d_depth == 0) == (modality == "rgb")  # the other exactly clean
    # the objective rose by a margin: well above what random noise of the same budget does
    assert after - before > (1.5 if black_box else 5) * _random_sign_gain(toy_model, toy_batch, th), (before, after)


@pytest.mark.parametrize("norm,eps,attack", [("linf", 8 / 255, "pgd"), ("l2", 1.0, "pgdl2")])
@pytest.mark.parametrize("zero", ["rgb", "depth"])
def test_zero_budget_modality_stays_exactly_clean(norm, eps, attack, zero, toy_model, toy_batch):
    """rgbd with a zero budget on one modality attacks the other alone; the zero one is bit-for-bit clean."""
    th = ThreatModel(norm=norm, eps=0 if zero == "rgb" else eps, eps_depth=0 if zero == "depth" else eps,
                     modality="rgbd", steps=3)
    assert th.space_eps == eps and th.space_modality == ("depth" if zero == "rgb" else "rgb")
    rgb, depth, before, after = _attack(attack, toy_model, toy_batch, th)
    assert torch.isfinite(rgb).all() and torch.isfinite(depth).all()
    clean, attacked = ((toy_batch.rgb, rgb), (toy_batch.depth, depth)) if zero == "rgb" else \
        ((toy_batch.depth, depth), (toy_batch.rgb, rgb))
    assert torch.equal(clean[0], clean[1])
    assert (attacked[1] - attacked[0]).abs().amax() > eps / 4 if norm == "linf" else \
        (attacked[1] - attacked[0]).norm() > 0.5
    check_budget(toy_batch.names, toy_batch.rgb, toy_batch.depth, rgb, depth, th)
    assert after - before > 5 * _random_sign_gain(toy_model, toy_batch, th)


def test_zero_budget_means_zero_change_and_nan_is_a_violation(toy_batch):
    b = toy_batch
    for th in (ThreatModel(eps=8 / 255, eps_depth=0, modality="rgbd"),
               ThreatModel(norm="l2", eps=1.0, eps_depth=0, modality="rgbd")):
        depth = b.depth.clone()
        depth[0, 0, 0, 0] = 1 - depth[0, 0, 0, 0]  # one depth pixel: any change at all is over a zero budget
        with pytest.raises(BudgetViolation, match=f"{b.names[0]}: depth has a zero budget"):
            check_budget(b.names, b.rgb, b.depth, b.rgb, depth, th)
        nan = b.rgb.clone()
        nan[1, 0, 3, 3] = float("nan")
        with pytest.raises(BudgetViolation, match=f"{b.names[1]}: the adversarial rgb input has non-finite"):
            check_budget(b.names, b.rgb, b.depth, nan, b.depth, th)
    clean_cell = ThreatModel(eps=0, modality="rgbd")
    space = AttackSpace(b.rgb, b.depth, clean_cell)
    rgb, depth = space.compose(space.initial())
    assert torch.equal(rgb, b.rgb) and torch.equal(depth, b.depth)  # the clean cell round-trips exactly
    check_budget(b.names, b.rgb, b.depth, rgb, depth, clean_cell)


def test_l2_budget(toy_model, toy_batch):
    th = ThreatModel(norm="l2", eps=0.5, modality="rgbd", steps=3)
    for name in ("pgdl2", "art-pgd", "art-fgm"):
        rgb, depth, before, after = _attack(name, toy_model, toy_batch, th)
        norms = check_budget(toy_batch.names, toy_batch.rgb, toy_batch.depth, rgb, depth, th)
        assert torch.all(torch.sqrt(norms["l2_rgb"] ** 2 + norms["l2_depth"] ** 2) <= 0.5 + 1e-5)
        assert after > before


def test_same_algorithm_same_numbers_across_backends(toy_model, toy_batch):
    th = ThreatModel(eps=8 / 255, eps_depth=4 / 255, modality="rgbd", steps=4)
    for ta, art in (("fgsm", "art-fgm"), ("bim", "art-pgd")):
        r1, d1, _, _ = _attack(ta, toy_model, toy_batch, th)
        r2, d2, _, _ = _attack(art, toy_model, toy_batch, th)
        assert torch.allclose(r1, r2, atol=1e-6) and torch.allclose(d1, d2, atol=1e-6), (ta, art)


def test_dense_view_gives_gradient(toy_model, toy_batch):
    th = ThreatModel(modality="rgbd")
    space = TASK.attack_space(toy_batch, th)
    u = space.initial().requires_grad_(True)
    logits = TASK.torchattacks_model(TASK.attacked_model(toy_model, space))(u)
    assert logits.shape[1] == 2
    loss = torch.nn.functional.cross_entropy(logits, TASK.torchattacks_labels(toy_batch.target))
    (g,) = torch.autograd.grad(loss, u)
    assert g.abs().sum() > 0
    bce = TASK.loss(TASK.attacked_model(toy_model, space)(u), toy_batch.target).mean()
    assert torch.allclose(loss, bce, atol=1e-5)  # CE over [0, z] is the pixel BCE


def test_budget_violation_is_an_error(toy_batch):
    th = ThreatModel(eps=4 / 255, modality="rgb")
    rgb = (toy_batch.rgb + 5 / 255).clamp(0, 1)
    with pytest.raises(BudgetViolation, match=toy_batch.names[0]):
        check_budget(toy_batch.names, toy_batch.rgb, toy_batch.depth, rgb, toy_batch.depth, th)
    with pytest.raises(BudgetViolation):  # depth is outside an rgb threat model
        check_budget(toy_batch.names, toy_batch.rgb, toy_batch.depth, toy_batch.rgb, toy_batch.depth * 0.99, th)


def test_fingerprint_sees_weights_buffers_and_mode(toy_model):
    ref = model_fingerprint(toy_model)
    toy_model.net[1].running_mean += 1e-3
    assert model_fingerprint(toy_model) != ref
    toy_model.net[1].running_mean -= 1e-3
    assert model_fingerprint(toy_model) == ref
    toy_model.train()
    assert model_fingerprint(toy_model) != ref


def test_attacks_leave_model_unchanged(toy_model, toy_batch):
    ref = model_fingerprint(toy_model)
    for name in GRADIENT_ATTACKS:
        _attack(name, toy_model, toy_batch, ThreatModel(steps=2))
        assert model_fingerprint(toy_model) == ref, name


def test_wrong_norm_is_rejected(toy_model, toy_batch):
    with pytest.raises(ValueError, match="supports norms"):
        _attack("pgd", toy_model, toy_batch, ThreatModel(norm="l2", eps=0.5))
