"""AdvGAN (attacks/advgan.py): the generator keeps any input size and the L-inf budget by construction;
fitted once through the runner on the train split against a trained tiny model, its one-pass
perturbations lower S on held-out images far more than random signs of the same size, within budget."""
import json

import pandas as pd
import pytest
import torch

from attacks.advgan import Generator, perturb
from benchmark.runner import RunConfig, run


@pytest.mark.parametrize("size", [(30, 30), (33, 47)])
def test_generator_keeps_the_size_and_the_perturbation_stays_in_the_ball(size):
    torch.manual_seed(0)
    g = Generator(4, width=8, blocks=1)
    u0 = torch.rand(2, 4, *size)
    assert g(u0).shape == u0.shape
    with torch.no_grad():
        g.net[-1].bias.fill_(10.0)  # saturate tanh: the perturbation sits on the ball's surface
        u = perturb(g, u0, 8 / 255)
    assert (u - u0).abs().max() <= 8 / 255 + 1e-7 and u.min() >= 0 and u.max() <= 1


SUITE = """
dataset: synthetic
batch_size: 16
seed: 0
limit: 16
cells:
  - {attack: none}
  - {attack: advgan, eps: 8/255, modality: rgbd, params: {fit_images: 64, epochs: 16, lr: 0.002}}
  - {attack: pgd, eps: 8/255, modality: rgbd, steps: 1, rel_step: 0.0}
"""


def test_advgan_fitted_through_the_runner_lowers_s_within_budget(pinned_tiny, tmp_path):
    (tmp_path / "s.yaml").write_text(SUITE)
    [run_dir] = run(RunConfig(model="jldcf-tiny", ckpt=str(pinned_tiny), suite=str(tmp_path / "s.yaml"),
                              results_dir=tmp_path / "results", leaderboard_dir=tmp_path / "lb"))
    table = pd.read_csv(tmp_path / "lb" / "saliency.csv").set_index("attack")
    (pt,) = (run_dir / "universal").glob("*.pt")
    meta = json.loads(pt.with_suffix(".json").read_text())
    assert meta["kind"] == "generator" and meta["fit_images"] == 64 and meta["fit_seconds"] > 0
    assert all(k.startswith("net.") for k in torch.load(pt, weights_only=True))
    # PGD with a zero step is the random start alone: uniform noise in the same ball
    clean, noise, advgan = table.S["none"], table.S["pgd"], table.S["advgan"]
    assert advgan < clean - 0.1 and clean - advgan > 3 * abs(clean - noise), (clean, noise, advgan)
