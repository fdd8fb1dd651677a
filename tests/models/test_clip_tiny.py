"""clip-tiny trained briefly by our own trainer: the checkpoint loads strictly into a fresh model and
gives the trained model's logits, the JSON sidecar is written, and zero-shot beats chance clearly."""
import json

import pytest
import torch

import benchmark.train_clip as train_clip_module
from benchmark.data.shapes import CLASSES, CaptionedShapes
from benchmark.train_clip import RECIPES, CLIPRecipe, train_clip
from models.clip import clip_tiny

SHORT = CLIPRecipe(epochs=3, batch_size=64, lr=2e-3, train_images=640)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(the trained wrapper, its checkpoint path, its test scores), the wrapper captured from the trainer."""
    built = []

    def capture(**kwargs):
        built.append(clip_tiny(**kwargs))
        return built[-1]

    out = tmp_path_factory.mktemp("clip_tiny") / "clip-tiny.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_clip_module, "clip_tiny", capture)
        scores = train_clip("clip-tiny", out, SHORT)
    return built[0], out, scores


def test_checkpoint_loads_strictly_and_gives_the_trained_logits(trained):
    model, path, _ = trained
    x = torch.stack([torch.from_numpy(CaptionedShapes("test")[i].rgb).permute(2, 0, 1) for i in range(16)]) / 255
    torch.manual_seed(123)
    loaded = clip_tiny(classnames=CLASSES).eval()
    with torch.no_grad():
        assert not torch.allclose(loaded(x), model(x))
        loaded.load_checkpoint(path)
        assert torch.equal(loaded(x), model.eval()(x))


def test_sidecar_records_the_recipe_and_the_scores(trained):
    _, path, scores = trained
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["model"] == "clip-tiny" and record["recipe"]["train_images"] == SHORT.train_images
    assert record["test"] == scores and set(scores) == {"top1", "top5", "R@1", "R@5"}
    assert not path.with_suffix(".tmp").exists()
    assert SHORT.id != RECIPES["clip-tiny"].id and len(SHORT.id) == 8


def test_zero_shot_beats_chance_clearly(trained):
    _, _, scores = trained
    chance = 1 / len(CLASSES)
    assert scores["top1"] > 2 * chance, scores
    assert scores["top5"] >= scores["top1"] and scores["R@5"] >= scores["R@1"]
