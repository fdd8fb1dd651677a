"""clip-tiny and its trainer: a short run saves a half-precision checkpoint that loads strictly into a
fresh model and gives the trained model's logits, with its JSON sidecar; the pinned weights (the shipped
recipe) beat chance clearly and reproduce the scores their registry entry records."""
import json

import open_clip
import pytest
import torch

import benchmark.training.clip as train_clip_module
from benchmark.data.shapes import CLASSES, CaptionedShapes
from benchmark.training.clip import RECIPES, CLIPRecipe, train_clip
from models.clip import clip_tiny

SHORT = CLIPRecipe(epochs=1, batch_size=64, train_images=256)


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


def test_config_is_a_small_resnet_clip_for_32px_images():
    model = clip_tiny()
    assert isinstance(model.model.visual, open_clip.model.ModifiedResNet)
    assert "clip-tiny" in open_clip.list_models() and open_clip.list_models().count("clip-tiny") == 1
    assert model.input_size == 32 and model.tokenizer.context_length == 20
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 1e7


def test_checkpoint_loads_strictly_and_gives_the_trained_logits(trained):
    model, path, _ = trained
    x = torch.stack([torch.from_numpy(CaptionedShapes("test")[i].rgb).permute(2, 0, 1) for i in range(16)]) / 255
    torch.manual_seed(123)
    loaded = clip_tiny(classnames=CLASSES).eval()
    with torch.no_grad():
        assert not torch.allclose(loaded(x), model(x))
        loaded.load_checkpoint(path)
        assert torch.equal(loaded(x), model.eval()(x))
    fresh = clip_tiny().model
    open_clip.load_checkpoint(fresh, str(path), strict=True, weights_only=True)


def test_sidecar_records_the_recipe_and_the_scores(trained):
    _, path, scores = trained
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["model"] == "clip-tiny" and record["recipe"]["train_images"] == SHORT.train_images
    assert record["test"] == scores and set(scores) == {"top1", "top5", "R@1", "R@5"}
    assert all(0 <= v <= 1 for v in scores.values()) and record["seconds"] > 0
    assert not path.with_suffix(".tmp").exists()
    assert SHORT.id != RECIPES["clip-tiny"].id and len(SHORT.id) == 8


def test_the_release_is_half_precision_and_scored_after_rounding(trained):
    model, path, _ = trained
    state = torch.load(path, weights_only=True)
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    for name, t in model.model.state_dict().items():  # the scored model holds exactly the released values
        assert torch.equal(t, state[name].to(t.dtype)) and (t.dtype == torch.float32 or not t.is_floating_point()), name


def test_the_pinned_weights_beat_chance_clearly_and_reproduce_their_scores(pinned_clip_tiny):
    from benchmark.pinned import registry
    from benchmark.training.clip import evaluate

    model = clip_tiny()
    model.load_checkpoint(pinned_clip_tiny)
    scores = evaluate(model)
    chance = 1 / len(CLASSES)
    assert scores["top1"] > 4 * chance, scores
    assert scores["top5"] >= scores["top1"] and scores["R@5"] >= scores["R@1"] > 8 / len(CaptionedShapes("test")), scores
    assert scores == pytest.approx(registry()["clip-tiny"].test, abs=1e-4)
