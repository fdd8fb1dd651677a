"""Natural adversarial examples (attacks/natural.py) and the unrestricted `latent` budget. With a stand-in
generator whose latent space is the pixel space (G(z) = clip(z), I(x) = x), the latent distance is an L2
distance we can check by hand: each image keeps its latent budget, reports its pixel distances, and an
image the search cannot fool keeps its clean input; the budget check rejects a latent distance over eps.
The generator of the RGB-D scenes trains (cut short here) and reports its reconstruction quality; its
pinned weights, searched through the runner, lower jldcf-tiny's S and the row carries the distances."""
import json
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from attacks import ATTACKS, ThreatModel
from benchmark.checks import BudgetViolation, check_budget
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.pinned import pinned_weights
from benchmark.runner import RunConfig, run
from benchmark.tasks import SaliencyTask
from benchmark.zoo import resolve_model

TASK = SaliencyTask()


class PixelSpace(nn.Module):
    """G(z) = clip(z) reshaped, I(x) = x flattened: latent distance = pixel L2 distance before clipping."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.channels, self.size, self.latent = channels, size, channels * size * size

    def generate(self, z: Tensor) -> Tensor:
        return z.view(len(z), self.channels, self.size, self.size).clamp(0, 1)

    def invert(self, x: Tensor) -> Tensor:
        return x.flatten(1)


@pytest.fixture(scope="module")
def setting(pinned_tiny):
    model = resolve_model("jldcf-tiny", str(pinned_tiny)).model.eval().requires_grad_(False)
    batch = make_batch([SyntheticRGBD("test")[i] for i in range(4)], model.input_size)
    return model, batch, PixelSpace(4, model.input_size)


def _attack(setting, eps: float, **params):
    model, batch, gan = setting
    threat = ThreatModel(norm="latent", eps=eps, modality="rgbd", steps=20, rel_step=0.25)
    space = TASK.attack_space(batch, threat)
    dense = TASK.attacked_model(model, space, batch)
    torch.manual_seed(0)
    out = ATTACKS["natural"](dense, space.initial(), batch.target, threat, TASK, network=gan, **params)
    with torch.no_grad():
        clean_fails = TASK.success(dense(space.initial()), batch.target)
        fooled = TASK.success(dense(out.u), batch.target)
    return space, threat, out, clean_fails, fooled


@pytest.mark.parametrize("search", ["stochastic", "gradient"])
def test_search_stays_within_the_latent_budget_and_reports_its_distances(setting, search):
    space, threat, out, clean_fails, fooled = _attack(setting, 60.0, search=search, samples=8, shells=6)
    u0, info = space.initial(), out.info
    assert (info["latent_distance"] <= threat.eps + 1e-4).all()
    moved = (out.u - u0).flatten(1)
    torch.testing.assert_close(info["pixel_l2"], moved.norm(dim=1))
    torch.testing.assert_close(info["pixel_linf"], moved.abs().amax(1))
    assert (info["pixel_l2"] <= info["latent_distance"] + 1e-3).all()  # clipping to [0,1] only shortens
    assert (fooled & ~clean_fails).any()  # it fools images the model gets right clean
    kept = info["latent_distance"] == 0
    assert torch.equal(out.u[kept], u0[kept])
    rgb, depth = space.compose(out.u)
    check_budget(["a", "b", "c", "d"], setting[1].rgb, setting[1].depth, rgb, depth, threat,
                 latent=info["latent_distance"])
    with pytest.raises(BudgetViolation, match="latent"):
        check_budget(["a", "b", "c", "d"], setting[1].rgb, setting[1].depth, rgb, depth, replace(threat, eps=0.5),
                     latent=info["latent_distance"] + 1.0)


def test_an_image_the_search_cannot_fool_keeps_its_clean_input(setting):
    space, _, out, clean_fails, _ = _attack(setting, 1e-3, samples=4, shells=2)
    right = ~clean_fails  # a radius of 1e-3 in pixel L2 cannot move these across the IoU threshold
    assert right.any() and torch.equal(out.u[right], space.initial()[right])
    assert (out.info["latent_distance"][right] == 0).all() and (out.info["pixel_l2"][right] == 0).all()


def test_a_latent_budget_takes_no_depth_budget_and_the_rgbd_generator_needs_rgbd(setting):
    with pytest.raises(ValueError, match="eps_depth does not apply"):
        ThreatModel(norm="latent", eps=1.0, eps_depth=0.5)
    model, batch, gan = setting
    threat = ThreatModel(norm="latent", eps=1.0, modality="rgb")
    space = TASK.attack_space(batch, threat)
    with pytest.raises(ValueError, match="modality rgbd"):
        ATTACKS["natural"](TASK.attacked_model(model, space, batch), space.initial(), batch.target, threat, TASK,
                           network=gan)


def test_the_rgbd_generator_trains_and_reports_its_reconstruction(tmp_path):
    from benchmark.training.natural import RECIPES, train_natural_generator

    recipe = replace(RECIPES["natural-vae-rgbd"], steps=20, train_images=64, batch_size=16)
    scores = train_natural_generator("natural-vae-rgbd", tmp_path / "g.pt", recipe)
    assert set(scores) == {"psnr_rgb", "psnr_depth"} and all(s > 0 for s in scores.values())
    generator = ATTACKS["natural"].network("natural-vae-rgbd", torch.load(tmp_path / "g.pt", weights_only=True))
    with torch.no_grad():
        x = generator.generate(torch.randn(2, generator.latent))
    assert x.shape == (2, 4, 32, 32) and 0 <= x.min() and x.max() <= 1


NATURAL_SUITE = """
dataset: synthetic
batch_size: 16
seed: 0
limit: 16
cells:
  - {attack: none}
  - {attack: natural, norm: latent, eps: 4, modality: rgbd, params: {search: stochastic, samples: 8, shells: 4}}
"""


def test_the_pinned_rgbd_generator_searched_through_the_runner_lowers_s_and_records_its_distances(pinned_tiny, tmp_path):
    (tmp_path / "s.yaml").write_text(NATURAL_SUITE)
    [root] = run(RunConfig(model="jldcf-tiny", ckpt=str(pinned_tiny), suite=str(tmp_path / "s.yaml"),
                           results_dir=tmp_path / "results", leaderboard_dir=tmp_path / "lb"))
    table = pd.read_csv(tmp_path / "lb" / "saliency.csv").set_index("attack")
    row = table.loc["natural"]
    assert row.S < table.S["none"] - 0.1 and row.norm == "latent"
    assert 0 < row.latent_distance <= 4 and row.pixel_l2 > 0 and 0 < row.pixel_linf <= 1
    [summary] = [s for s in (json.loads(p.read_text()) for p in root.glob("cells/*/summary.json"))
                 if s["cell"]["attack"] == "natural"]
    entry, _ = pinned_weights("natural-vae-rgbd")
    assert summary["attack_network"] == "natural-vae-rgbd" and summary["attack_network_sha256"] == entry.sha256
