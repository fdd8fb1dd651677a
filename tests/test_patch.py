"""Adversarial patches: ours (per image and universal) and ART's, under the patch-area budget."""
import numpy as np
import pytest
import torch
from torch import nn

from attacks import ATTACKS, ThreatModel
from attacks.patch import EOT, name_generator, paste, placements, render
from benchmark.checks import BudgetViolation, check_budget
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.tasks import ClassificationTask, SaliencyTask
from models import build_model
from models.base import load_state_dict_file

SAL = SaliencyTask()
FAST = {"eot_samples": 2}


@pytest.fixture(scope="module")
def tiny(pinned_tiny):
    model = build_model("jldcf-tiny")
    model.load_strict(load_state_dict_file(pinned_tiny), str(pinned_tiny))
    return model.eval().requires_grad_(False)


def _batch(split, start, n, size):
    ds = SyntheticRGBD(split)
    return make_batch([ds[i] for i in range(start, start + n)], size)


def _run(name, model, batch, threat, seed=0, **params):
    torch.manual_seed(seed)
    np.random.seed(seed)
    space = SAL.attack_space(batch, threat)
    out = ATTACKS[name](SAL.attacked_model(model, space), space.initial(), batch.target, threat, SAL,
                        names=batch.names, **params)
    rgb, depth = space.compose(out.u)
    return out, rgb, depth


def _s_measure(model, batch, rgb, depth):
    with torch.no_grad():
        logits = model(rgb, depth)
    return np.mean([s["S"] for s, _ in SAL.score(model, logits, batch)]), SAL.loss(logits, batch.target).mean().item()


def _random_patch(u0, mask, seed=1):
    """``u0`` with uniform noise inside ``mask``: the same patch budget with no optimisation."""
    g = torch.Generator().manual_seed(seed)
    m = mask.expand_as(u0)
    x = u0.clone()
    x[m] = torch.rand(int(m.sum()), generator=g)
    return x


def _tops(mask):
    return [tuple(m[0].nonzero().min(0).values.tolist()) for m in mask]


def test_render_at_nominal_pose_is_the_paste():
    u, p = torch.rand(3, 4, 40, 40), torch.rand(3, 4, 7, 7)
    tops = torch.tensor([[0, 0], [33, 10], [5, 33]])
    x = render(u, p, tops + 3.5, EOT(scale=(1, 1), rotation=0, brightness=0, contrast=0, noise=0))
    assert torch.allclose(x, paste(u, p, tops)[0], atol=1e-5)


def test_per_image_patch_lowers_s_measure_within_budget(tiny):
    batch = _batch("test", 0, 4, tiny.input_size)
    th = ThreatModel(norm="patch", eps=0.04, modality="rgbd", steps=12)
    out, rgb, depth = _run("patch", tiny, batch, th, lr=0.2, **FAST)
    s_clean, loss_clean = _s_measure(tiny, batch, batch.rgb, batch.depth)
    s_adv, loss_adv = _s_measure(tiny, batch, rgb, depth)
    assert s_adv < s_clean - 0.03 and loss_adv > loss_clean, (s_clean, s_adv, loss_clean, loss_adv)
    rgb_r, depth_r = SAL.attack_space(batch, th).compose(_random_patch(torch.cat([batch.rgb, batch.depth], 1), out.mask))
    s_rand, loss_rand = _s_measure(tiny, batch, rgb_r, depth_r)
    assert loss_adv > 1.15 * loss_rand and s_adv < s_rand, (loss_rand, loss_adv, s_rand, s_adv)  # optimised, not just pasted
    check_budget(batch.names, batch.rgb, batch.depth, rgb, depth, th, out.mask)
    side = 25  # floor(sqrt(0.04 * 128^2))
    assert out.mask.flatten(1).sum(1).tolist() == [side**2] * 4 and side**2 <= th.eps * 128**2
    assert out.info["patch_side"].tolist() == [side] * 4
    assert torch.allclose(out.info["patch_area"], torch.full((4,), side**2 / 128**2))
    with pytest.raises(BudgetViolation):  # the patch moved off its declared mask
        check_budget(batch.names, batch.rgb, batch.depth, rgb, depth, th, out.mask.roll(side, -1))
    with pytest.raises(BudgetViolation):  # a mask larger than the area budget
        check_budget(batch.names, batch.rgb, batch.depth, rgb, depth, th, torch.ones_like(out.mask))


def test_placement_is_a_function_of_the_image_name(toy_model, toy_batch):
    th = ThreatModel(norm="patch", eps=0.05, modality="rgbd", steps=1)
    a, _, _ = _run("patch", toy_model, toy_batch, th, seed=0, **FAST)
    b, _, _ = _run("patch", toy_model, toy_batch, th, seed=1, **FAST)
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.u, b.u)
    perm = [2, 0, 3, 1]
    ds = SyntheticRGBD("test")
    c, _, _ = _run("patch", toy_model, make_batch([ds[i] for i in perm], toy_model.input_size), th, **FAST)
    assert _tops(c.mask) == [_tops(a.mask)[i] for i in perm]
    rand, _, _ = _run("patch", toy_model, toy_batch, th, placement="random", **FAST)
    assert len(set(_tops(rand.mask))) > 1


def test_object_and_fixed_placement(toy_model, toy_batch):
    th = ThreatModel(norm="patch", eps=0.05, modality="rgbd", steps=1)
    side = 10  # floor(sqrt(0.05 * 48^2))
    out, _, _ = _run("patch", toy_model, toy_batch, th, placement="object", **FAST)
    for i, (r, c) in enumerate(_tops(out.mask)):
        assert toy_batch.target[i, 0, r + side // 2, c + side // 2] == 1
    out, _, _ = _run("patch", toy_model, toy_batch, th, placement="fixed", at=(0.5, 0.5), **FAST)
    assert _tops(out.mask) == [(19, 19)] * 4


@pytest.mark.parametrize("modality", ["rgb", "depth", "rgbd"])
def test_only_the_attacked_modality_changes(modality, toy_model, toy_batch):
    th = ThreatModel(norm="patch", eps=0.05, modality=modality, steps=2)
    out, rgb, depth = _run("patch", toy_model, toy_batch, th, **FAST)
    assert out.u.shape[1] == {"rgb": 3, "depth": 1, "rgbd": 4}[modality]
    check_budget(toy_batch.names, toy_batch.rgb, toy_batch.depth, rgb, depth, th, out.mask)
    rgb_moved = (rgb != toy_batch.rgb).any().item()
    depth_moved = (depth != toy_batch.depth).any().item()
    assert (rgb_moved, depth_moved) == {"rgb": (True, False), "depth": (False, True), "rgbd": (True, True)}[modality]


def test_universal_patch_fits_on_batches_and_transfers(tiny):
    th = ThreatModel(norm="patch", eps=0.04, modality="rgbd", steps=1)
    train = [_batch("train", i, 4, tiny.input_size) for i in (0, 4, 8, 12)]

    def views():
        for b in train:
            space = SAL.attack_space(b, th)
            yield SAL.attacked_model(tiny, space), space.initial(), b.target, b.names

    torch.manual_seed(0)
    patch = ATTACKS["upatch"].fit(views, th, SAL, epochs=5, **FAST)
    assert patch.shape == (4, 25, 25) and 0 <= patch.min() and patch.max() <= 1
    test = _batch("test", 4, 8, tiny.input_size)
    out, rgb, depth = _run("upatch", tiny, test, th, universal=patch)
    check_budget(test.names, test.rgb, test.depth, rgb, depth, th, out.mask)
    for i, (r, c) in enumerate(_tops(out.mask)):
        assert torch.equal(out.u[i, :, r:r + 25, c:c + 25], patch)
    assert _s_measure(tiny, test, rgb, depth)[1] > _s_measure(tiny, test, test.rgb, test.depth)[1]
    with pytest.raises(ValueError, match="does not fit"):
        _run("upatch", tiny, test, ThreatModel(norm="patch", eps=0.09, modality="rgbd"), universal=patch)


@pytest.mark.parametrize("name", ["patch", "art-patch"])
def test_classifier_patch_within_budget(name):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 16 * 16, 5)).eval().requires_grad_(False)
    with torch.no_grad():  # logits that depend on the input enough for a patch to matter
        net[3].weight *= 30
    task, x = ClassificationTask(), torch.rand(4, 3, 32, 32)
    names = [f"img{i}" for i in range(4)]
    with torch.no_grad():
        y = task.reference(net(x))
    th = ThreatModel(norm="patch", eps=0.05, modality="rgb", steps=5)
    np.random.seed(0)
    out = ATTACKS[name](net, x, y, th, task, names=names, placement="random", unknown_param=1, **FAST)
    depth = torch.zeros(4, 1, 32, 32)
    check_budget(names, x, depth, out.u, depth, th, out.mask)
    side = {"patch": 7, "art-patch": 6}[name]  # ART's side has the parity of the image's
    expected = placements(32, side, "random", None, (0.5, 0.5), [name_generator(n) for n in names])
    assert _tops(out.mask) == [tuple(t) for t in expected.tolist()]
    for i, (r, c) in enumerate(_tops(out.mask)):
        square = torch.zeros(32, 32, dtype=torch.bool)
        square[r:r + side, c:c + side] = True
        assert torch.equal(out.mask[i, 0], square)
    assert out.info["patch_side"].tolist() == [side] * 4 and (out.u != x).any()
    with torch.no_grad():  # the optimised patch beats uniform noise in the same square
        loss_adv, loss_rand = (task.loss(net(u), y).mean().item() for u in (out.u, _random_patch(x, out.mask)))
    assert loss_adv > 1.3 * loss_rand, (loss_adv, loss_rand)


def test_art_patch_refuses_dense_outputs(toy_model, toy_batch):
    th = ThreatModel(norm="patch", eps=0.05, modality="rgbd", steps=1)
    with pytest.raises(ValueError, match="dense output"):
        _run("art-patch", toy_model, toy_batch, th)
