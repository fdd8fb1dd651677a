"""The open_clip zero-shot wrapper: a checkpoint the test writes from a small config loads strictly,
gives the same logits, bad files are clear errors, and attacks work in [0,1] pixel space."""
import json

import numpy as np
import open_clip
import pytest
import torch

from attacks import ATTACKS, ThreatModel
from benchmark.tasks import ClassificationTask
from models.base import normalize
from models.clip import CLIPZeroShot

CLASSES = ["circle", "square", "triangle", "star"]
CONFIG = {"embed_dim": 32,
          "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_cfg")
    (folder / "test-clip-tiny.json").write_text(json.dumps(CONFIG))
    open_clip.add_model_config(folder)
    return "test-clip-tiny"


@pytest.fixture(scope="module")
def written(arch, tmp_path_factory):
    torch.manual_seed(0)
    model = CLIPZeroShot(arch, CLASSES).eval()
    path = tmp_path_factory.mktemp("ckpt") / "clip.pt"
    torch.save({"state_dict": model.model.state_dict()}, path)
    return model, path


def test_checkpoint_loads_strictly_and_gives_the_same_logits(arch, written):
    original, path = written
    torch.manual_seed(1)
    loaded = CLIPZeroShot(arch, CLASSES).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(loaded(x), original(x))
        loaded.load_checkpoint(path)
        assert torch.equal(loaded(x), original(x))
    assert loaded.input_size == 32 and loaded(x).shape == (3, len(CLASSES))


def test_bad_checkpoints_are_errors_naming_the_file(arch, written, tmp_path):
    _, path = written
    model = CLIPZeroShot(arch, CLASSES)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        model.load_checkpoint(tmp_path / "missing.pt")
    sd = torch.load(path, weights_only=True)["state_dict"]
    del sd["logit_scale"]
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt"):
        model.load_checkpoint(tmp_path / "partial.pt")
    torch.save({"state_dict": sd, "not_weights": object.__new__(ClassificationTask)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="pickled.pt"):  # weights_only refuses arbitrary objects
        model.load_checkpoint(tmp_path / "pickled.pt")
    with pytest.raises(KeyError, match="unknown open_clip architecture"):
        CLIPZeroShot("no-such-arch")


def test_normalisation_inside_is_exact_in_float64(written):
    model, _ = written
    model = model.double()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    mean = torch.tensor(model.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(model.std, dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.equal(normalize(x, model.mean, model.std), (x - mean) / std)
    with torch.no_grad():
        image = torch.nn.functional.normalize(model.model.encode_image((x - mean) / std), dim=-1)
        expected = model.model.logit_scale.exp() * image @ model.class_embeddings.T
        assert torch.equal(model(x), expected)
    model.float()


def test_pgd_moves_zero_shot_predictions_within_budget(written):
    model, _ = written
    model = model.eval().requires_grad_(False)
    task, x = ClassificationTask(), torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        label = model(x).argmax(1)
    torch.manual_seed(0)
    th = ThreatModel(eps=8 / 255, modality="rgb", steps=10)
    x_adv = ATTACKS["pgd"](model, x, label, th, task)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != label).float().mean() >= 0.5
    assert np.isfinite(task.loss(model(x_adv), label).detach().numpy()).all()
