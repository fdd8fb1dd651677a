"""Pinned reference weights (benchmark/pinned.py): every embedded variant has committed weights that match
their sha256 and current recipe and reproduce their recorded test scores; `make bench` uses them without
training; a changed file is an error naming it; `make train` checks the target and PIN=1 replaces them."""
import json

import pytest
import torch

from benchmark import cli, zoo
from benchmark.pinned import missed_targets, pin, pinned_weights, registry
from benchmark.training import TRAINERS
from benchmark.training.saliency import evaluate
from models import build_model

SALIENCY = ["jldcf-tiny", "bbsnet-tiny", "d3net-tiny", "jldcf-tiny-at", "bbsnet-tiny-at", "d3net-tiny-at"]


def test_every_embedded_variant_is_pinned_with_its_current_recipe_and_a_small_file():
    entries = registry()
    assert set(entries) == set(TRAINERS)
    for name, entry in entries.items():
        _, path = pinned_weights(name)  # sha256 verified
        assert entry.recipe == TRAINERS[name][0].id, f"{name}: recipe changed, `make train MODEL={name} PIN=1`"
        assert path.stat().st_size < 20e6 and entry.why, name
        assert not missed_targets(entry.test, entry.target) and entry.target, name


@pytest.mark.parametrize("name", SALIENCY)
def test_pinned_saliency_weights_reproduce_their_recorded_scores(name):
    """Recorded on the machine that pinned them; equal here to 1e-4 (4 decimals are stored)."""
    resolved = zoo.resolve_model(name)
    assert resolved.checkpoint == registry()[name].label()
    assert evaluate(resolved.model) == pytest.approx(registry()[name].test, abs=1e-4)


def test_the_pinned_tecoa_image_tower_over_pinned_clip_tiny_reproduces_its_scores(tmp_path):
    """clip-tiny-tecoa is pinned as its image tower; composed with clip-tiny's pinned text tower it scores as
    recorded, and its text tower is clip-tiny's."""
    from benchmark.training.clip import evaluate as evaluate_clip

    tuned, base = zoo.resolve_model("clip-tiny-tecoa", cache=tmp_path), zoo.resolve_model("clip-tiny")
    assert tuned.checkpoint == registry()["clip-tiny-tecoa"].label() and list(tmp_path.iterdir())
    assert evaluate_clip(tuned.model) == pytest.approx(registry()["clip-tiny-tecoa"].test, abs=1e-4)
    tuned_state, base_state = tuned.model.model.state_dict(), base.model.model.state_dict()
    assert all(torch.equal(v, base_state[k]) for k, v in tuned_state.items() if not k.startswith("visual."))
    assert any(not torch.equal(v, base_state[k]) for k, v in tuned_state.items() if k.startswith("visual."))


def test_bench_uses_the_pinned_weights_without_training(monkeypatch, tmp_path):
    def refuse(*_):
        raise AssertionError("trained although pinned")
    monkeypatch.setitem(zoo.TRAINERS, "jldcf-tiny", (TRAINERS["jldcf-tiny"][0], refuse))
    resolved = zoo.resolve_model("jldcf", cache=tmp_path)
    entry = registry()["jldcf-tiny"]
    assert resolved.checkpoint == f"recipe-{entry.recipe}@{entry.sha256[:8]}" and resolved.checkpoint_sha256 == entry.sha256
    assert not list(tmp_path.iterdir())


def _registry_copy(tmp_path, name="jldcf-tiny"):
    entry, path = pinned_weights(name)
    (tmp_path / entry.file).write_bytes(path.read_bytes())
    reg = tmp_path / "pinned.json"
    reg.write_text(json.dumps({name: {k: v for k, v in vars(entry).items() if k != "name"}}))
    return reg, tmp_path / entry.file


def test_a_changed_or_missing_pinned_file_is_an_error_naming_it(tmp_path):
    reg, file = _registry_copy(tmp_path)
    assert pinned_weights("jldcf-tiny", reg)[1] == file
    data = file.read_bytes()
    file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ValueError, match=f"{file}: sha256 .* differs"):
        pinned_weights("jldcf-tiny", reg)
    file.unlink()
    with pytest.raises(FileNotFoundError, match=str(file)):
        pinned_weights("jldcf-tiny", reg)
    reg.write_text("{not json")
    with pytest.raises(ValueError, match=f"{reg}: not a pinned-weights registry"):
        registry(reg)


def test_a_variant_pinned_over_a_base_pinned_again_since_is_an_error(tmp_path):
    from benchmark.pinned import compose

    entries = registry()
    for name in ("clip-tiny", "clip-tiny-tecoa"):
        (tmp_path / entries[name].file).write_bytes(pinned_weights(name)[1].read_bytes())
    stale = {**vars(entries["clip-tiny-tecoa"]), "base_sha256": "0" * 64}
    reg = tmp_path / "pinned.json"
    reg.write_text(json.dumps({"clip-tiny": {k: v for k, v in vars(entries["clip-tiny"]).items() if k != "name"},
                               "clip-tiny-tecoa": {k: v for k, v in stale.items() if k != "name"}}))
    entry, file = pinned_weights("clip-tiny-tecoa", reg)
    with pytest.raises(ValueError, match="pinned against clip-tiny@00000000"):
        compose(entry, file, tmp_path / "cache")


def test_targets_respect_the_metric_direction():
    assert missed_targets({"S": 0.9, "MAE": 0.02}, {"S": 0.85, "MAE": 0.05}) == []
    assert missed_targets({"S": 0.8, "MAE": 0.06}, {"S": 0.85, "MAE": 0.05}) == ["S 0.800 < 0.85", "MAE 0.060 > 0.05"]
    assert missed_targets({}, {"top1": 0.5}) == ["top1 nan < 0.5"]


def test_pin_replaces_file_and_entry_keeping_target_and_note(tmp_path):
    reg, file = _registry_copy(tmp_path)
    new = tmp_path / "retrained.pt"
    torch.save({"w": torch.ones(2)}, new)
    entry = pin("jldcf-tiny", new, "abcd1234", {"S": 0.91234567}, path=reg)
    assert file.read_bytes() == new.read_bytes() and entry.test == {"S": 0.9123} and entry.recipe == "abcd1234"
    assert registry(reg)["jldcf-tiny"] == entry and entry.target == registry()["jldcf-tiny"].target
    with pytest.raises(ValueError, match="no entry"):
        pin("other", new, "abcd1234", {}, path=reg)


def test_make_train_checks_the_target_and_pins_only_when_reached(monkeypatch, tmp_path, capsys):
    """`python -m benchmark train --pin` with a stand-in trainer: a retrain below target exits 1 and pins
    nothing; one that reaches it replaces the pinned file."""
    reg, file = _registry_copy(tmp_path)
    monkeypatch.setattr("benchmark.pinned.REGISTRY", reg)
    original = file.read_bytes()

    def fake_trainer(score):
        def train(name, out, recipe, device="cpu"):
            torch.save(build_model(name).state_dict(), out)
            return {"S": score}
        return train
    recipe = TRAINERS["jldcf-tiny"][0]
    monkeypatch.setitem(TRAINERS, "jldcf-tiny", (recipe, fake_trainer(0.1)))
    assert cli.main(["train", "--model", "jldcf", "--out", str(tmp_path / "a.pt"), "--pin"]) == 1
    assert "MISSED S 0.100" in capsys.readouterr().out and file.read_bytes() == original
    monkeypatch.setitem(TRAINERS, "jldcf-tiny", (recipe, fake_trainer(0.99)))
    assert cli.main(["train", "--model", "jldcf", "--out", str(tmp_path / "b.pt"), "--pin"]) == 0
    assert file.read_bytes() == (tmp_path / "b.pt").read_bytes() and registry(reg)["jldcf-tiny"].test == {"S": 0.99}
