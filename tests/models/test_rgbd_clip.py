"""RGB-D CLIP: unit embeddings, retrieval over a gallery as classification, strict checkpoints, and a short
training run with our trainer that learns to pair RGB images with their depth maps."""
import json

import numpy as np
import pytest
import torch

from benchmark.data import SyntheticRGBD, make_batch
from benchmark.tasks import ClassificationTask
from benchmark.training.rgbd_clip import (RECIPES, RGBDCLIPRecipe, augment, evaluate_rgbd_clip, hard_negatives,
                                       recall_at, rgbd_clip_loss, train_rgbd_clip)
from models.rgbd_clip import RGBDCLIP

S = RGBDCLIP().input_size


@pytest.fixture(scope="module")
def batch():
    ds = SyntheticRGBD("test")
    return make_batch([ds[i] for i in range(6)], S)


@pytest.fixture
def model() -> RGBDCLIP:
    torch.manual_seed(0)
    return RGBDCLIP().eval()


def test_encoders_give_unit_embeddings_in_float32_and_float64(model, batch):
    with torch.no_grad():
        e_rgb, e_depth = model.encode_rgb(batch.rgb), model.encode_depth(batch.depth)
        assert e_rgb.shape == e_depth.shape == (6, model.embed_dim)
        assert torch.allclose(e_rgb.norm(dim=1), torch.ones(6)) and torch.allclose(e_depth.norm(dim=1), torch.ones(6))
        assert model.itm_logits(batch.rgb, batch.depth).shape == (6, 2)
        model.double()
        e64 = model.encode_rgb(batch.rgb.double())
        assert e64.dtype == torch.float64 and torch.allclose(e64.norm(dim=1), torch.ones(6, dtype=torch.float64))
        assert torch.allclose(e64.float(), e_rgb, atol=1e-5)
        assert model.itm_logits(batch.rgb.double(), batch.depth.double()).dtype == torch.float64


def test_scale_starts_at_clip_init_and_is_clamped_at_100(model):
    assert model.scale().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == 100.0


def test_forward_scores_the_gallery_and_is_differentiable_in_the_query(model, batch):
    with pytest.raises(RuntimeError, match="set_gallery"):
        model(batch.rgb)
    model.set_gallery(batch.depth)
    x = batch.rgb[:4].clone().requires_grad_(True)
    logits = model(x)
    assert logits.shape == (4, 6)
    expected = model.scale() * model.encode_rgb(x) @ model.encode_depth(batch.depth).T
    assert torch.allclose(logits, expected, atol=1e-5)
    ClassificationTask().loss(logits, torch.arange(4)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_depth_query_uses_the_depth_encoder_against_an_rgb_gallery(batch):
    torch.manual_seed(0)
    model = RGBDCLIP().eval()
    model.set_gallery(batch.rgb, query="depth")
    with torch.no_grad():
        assert torch.equal(model.gallery_embeddings, model.encode_rgb(batch.rgb))
        expected = model.scale() * model.encode_depth(batch.depth) @ model.encode_rgb(batch.rgb).T
        assert torch.allclose(model(batch.depth), expected, atol=1e-5)
    with pytest.raises(ValueError, match="query"):
        model.set_gallery(batch.rgb, query="text")
    with pytest.raises(ValueError, match=r"\(G,1,S,S\)"):
        model.set_gallery(batch.rgb, query="rgb")  # an RGB query scores depth maps


def test_matching_accuracy_reads_the_partner_and_the_hardest_negative(model, batch):
    """ITM accuracy per query is (matched on its partner + not matched on its hardest ITC negative) / 2,
    checked against the head called on those pairs directly, in both directions."""
    for query, gallery, x in (("rgb", batch.depth, batch.rgb), ("depth", batch.rgb, batch.depth)):
        model.set_gallery(gallery, query)
        target = torch.tensor([1, 0, 3, 2, 5, 4])  # deliberately not the diagonal
        with torch.no_grad():
            logits = model(x)
            negative = logits.scatter(1, target[:, None], float("-inf")).argmax(1)
            assert (negative != target).all()
            rgb_of = (lambda i: x) if query == "rgb" else (lambda i: gallery[i])
            depth_of = (lambda i: gallery[i]) if query == "rgb" else (lambda i: x)
            positive = model.itm_logits(rgb_of(target), depth_of(target)).argmax(1) == 1
            hard = model.itm_logits(rgb_of(negative), depth_of(negative)).argmax(1) == 0
            expected = (positive.double() + hard.double()) / 2
            assert torch.equal(model.matching_accuracy(x, target, logits).double(), expected)


def test_checkpoint_round_trip_is_strict_and_gives_the_same_logits(model, batch, tmp_path):
    path = tmp_path / "rgbd_clip.pt"
    torch.save(model.state_dict(), path)
    assert not any(k.startswith("gallery") for k in model.state_dict())  # the gallery is not saved
    torch.manual_seed(1)
    loaded = RGBDCLIP().eval()
    loaded.set_gallery(batch.depth, "rgb")
    model.set_gallery(batch.depth, "rgb")
    with torch.no_grad():
        assert not torch.allclose(loaded(batch.rgb), model(batch.rgb))
        loaded.load_checkpoint(path)  # re-encodes the gallery with the loaded weights
        assert torch.equal(loaded(batch.rgb), model(batch.rgb))
        assert torch.equal(loaded.itm_logits(batch.rgb, batch.depth), model.itm_logits(batch.rgb, batch.depth))


def test_bad_checkpoints_are_errors_naming_the_file(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        model.load_checkpoint(tmp_path / "missing.pt")
    sd = model.state_dict()
    del sd["logit_scale"]
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt"):
        model.load_checkpoint(tmp_path / "partial.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        model.load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": sd, "not_weights": object.__new__(ClassificationTask)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="pickled.pt"):  # weights_only refuses arbitrary objects
        model.load_checkpoint(tmp_path / "pickled.pt")


def test_augment_moves_rgb_and_depth_of_a_pair_together():
    # a pair whose depth is the RGB's first channel stays so through shifts and flips
    rgb = torch.rand(8, 3, S, S)
    shifted_rgb, shifted_depth = augment(rgb, rgb[:, :1].clone(), np.random.default_rng(0))
    assert shifted_rgb.shape == rgb.shape and torch.equal(shifted_depth, shifted_rgb[:, :1])
    assert not torch.equal(shifted_rgb, rgb)


def test_hard_negatives_never_pick_the_positive_and_follow_the_similarity():
    torch.manual_seed(0)
    s = torch.zeros(4, 4)
    s[0, 2] = s[1, 3] = s[2, 0] = s[3, 1] = 50.0
    s.fill_diagonal_(100.0)
    assert hard_negatives(s).tolist() == [2, 3, 0, 1]
    assert (hard_negatives(torch.randn(64, 64)) != torch.arange(64)).all()


def test_recall_counts_the_rank_of_the_diagonal():
    s = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.0], [0.7, 0.6, 0.1]])
    assert recall_at(s, (1, 2, 3)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}


def test_trainer_saves_weights_and_sidecar(tmp_path):
    out = tmp_path / "rgbd-clip.pt"
    recipe = RGBDCLIPRecipe(epochs=1, train_images=32, batch_size=16)
    scores = train_rgbd_clip("rgbd-clip", out, recipe)
    assert set(scores) == {f"{d}_R@{k}" for d in ("rgb2depth", "depth2rgb") for k in (1, 5, 10)} | {"itm_acc"}
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["model"] == "rgbd-clip" and side["recipe"]["train_images"] == 32 and side["test"] == scores
    RGBDCLIP().load_checkpoint(out)
    assert not out.with_suffix(".tmp").exists()
    assert recipe.id != RECIPES["rgbd-clip"].id and len(recipe.id) == 8


def test_the_pinned_weights_retrieve_far_above_chance_and_reproduce_their_scores(pinned_rgbd_clip):
    """The pinned rgbd-clip (its shipped recipe: 10 epochs, about 350 s on 2 CPU threads) has a lower
    contrastive loss than an untrained model, retrieves far above chance (R@1 1/64), matches above chance
    (ITM 1/2), and its test scores here are those its registry entry records."""
    from benchmark.pinned import registry

    ds = SyntheticRGBD("test")
    b = make_batch([ds[i] for i in range(32)], S)
    torch.manual_seed(0)
    untrained = RGBDCLIP().eval()
    trained = RGBDCLIP().eval()
    trained.load_checkpoint(pinned_rgbd_clip)
    with torch.no_grad():
        itc_before = rgbd_clip_loss(untrained, b.rgb, b.depth, 1.0)[1]
        itc_after = rgbd_clip_loss(trained, b.rgb, b.depth, 1.0)[1]
    assert itc_after < itc_before - 1.0, (itc_before, itc_after)
    scores = evaluate_rgbd_clip(trained)
    assert scores["rgb2depth_R@1"] > 0.6 and scores["depth2rgb_R@1"] > 0.6 and scores["itm_acc"] > 0.75, scores
    assert scores == pytest.approx(registry()["rgbd-clip"].test, abs=1e-4)
