"""Ensemble surrogates (attacks/ensemble.py): the attacked view of an ensemble is the mean of its members'
views, each at its own input size; suites name ensembles as 'a+b' and reject unknown or repeated
members; a cell whose ensemble includes the benchmarked model is not transfer and is skipped."""
import pytest
import torch

from attacks import ThreatModel
from attacks.ensemble import SurrogateEnsemble
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.suite import load_suite
from benchmark.tasks import SaliencyTask
from benchmark.zoo import resolve_model


def test_ensemble_view_averages_its_members_logits_each_at_its_own_size(toy_model, pinned_tiny):
    tiny = resolve_model("jldcf-tiny", str(pinned_tiny)).model.eval().requires_grad_(False)
    assert tiny.input_size != toy_model.input_size  # 48 px and jldcf-tiny's own
    task = SaliencyTask()
    batch = make_batch([SyntheticRGBD("test")[i] for i in range(2)], 96)
    space = task.attack_space(batch, ThreatModel(modality="rgbd"))
    u = space.initial().requires_grad_(True)
    fused = task.attacked_model(SurrogateEnsemble([toy_model, tiny]), space)(u)
    one, two = (task.attacked_model(m, space)(u) for m in (toy_model, tiny))
    assert fused.shape == (2, 1, 96, 96)
    torch.testing.assert_close(fused, (one + two) / 2)
    (g,) = torch.autograd.grad(task.loss(fused, batch.target).sum(), u)
    assert g.abs().sum() > 0


def test_suites_name_ensembles_with_plus_and_reject_unknown_or_repeated_members(tmp_path):
    moved = [c for c in load_suite("transfer").cells if c.surrogate]
    assert {c.surrogate for c in moved} >= {"bbsnet+d3net", "jldcf+d3net", "jldcf+bbsnet"}
    for bad in ("jldcf+nope", "jldcf+jldcf"):
        path = tmp_path / "s.yaml"
        path.write_text(f"cells:\n  - {{attack: pgd, eps: 8/255, surrogate: [{bad}]}}\n")
        with pytest.raises(ValueError, match=rf"cells\[0\]: surrogate '{bad.replace('+', '[+]')}'"):
            load_suite(str(path))
