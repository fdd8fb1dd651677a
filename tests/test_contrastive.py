"""The contrastive training loop (benchmark/training/contrastive.py) and the training-time defenses
(defenses/safeclip.py, roclip.py, cleanclip.py): SafeCLIP's split on hand-made similarities, the memory
bank's snapshot-then-update order, RoCLIP's pooled captions, CleanCLIP's weighted loss, the seeded views,
and a short training run of every objective on 64 captioned shapes (seconds each)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attacks.poisoning import Pairs, build_poisoning
from benchmark.data.shapes import CLASSES, CaptionedShapes
from benchmark.training.clip import MAX_SHIFT, shape_images
from benchmark.training.contrastive import (ContrastiveData, ContrastiveRecipe, ContrastiveRun, MemoryBank, _batches,
                                            augmented, clip_loss, eda, info_nce, shifted, train_contrastive,
                                            warmup_cosine)
from defenses.cleanclip import CleanCLIP, autoaugmented, clean_subset
from defenses.roclip import RoCLIP
from defenses.safeclip import SafeCLIP, clean_posterior, safe_split
from defenses.training import TRAINING_DEFENSES, build_training_defense
from models.base import normalize
from models.clip import clip_tiny

RECIPE = ContrastiveRecipe(epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def clean() -> Pairs:
    return Pairs(*shape_images(CaptionedShapes("train", n=64)), CLASSES)


@pytest.fixture(scope="module")
def poisoned(clean):
    return build_poisoning("badnets", target="star", rate=0.125, seed=1).poison(clean)


def fresh_model(seed: int = 0):
    torch.manual_seed(seed)
    return clip_tiny()


def unit(degrees: float) -> torch.Tensor:
    r = math.radians(degrees)
    return torch.tensor([[math.cos(r), math.sin(r)]])


# SafeCLIP's split

def hand_made_similarities() -> tuple[np.ndarray, np.ndarray]:
    """100 pairs: 50 'clean' similarities spread over [0.6, 0.8] at the odd indices, 50 'poisoned' ones over
    [0.0, 0.2] at the even indices; returns them and the clean indices."""
    similarity = np.empty(100)
    similarity[1::2] = np.linspace(0.6, 0.8, 50)
    similarity[0::2] = np.linspace(0.0, 0.2, 50)
    return similarity, np.arange(1, 100, 2)


def test_the_gmm_posterior_is_the_higher_mean_components():
    similarity, high = hand_made_similarities()
    posterior = clean_posterior(similarity)
    assert posterior[high].min() > 0.99 and np.delete(posterior, high).max() < 0.01
    assert np.allclose(clean_posterior(-similarity)[high], 0, atol=0.01)  # follows the mean, not the fit's order


def test_the_first_split_keeps_posteriors_of_at_least_the_threshold():
    posterior = np.array([0.95, 0.9, 0.89, 0.1, 1.0, 0.5])
    assert safe_split(posterior, None).tolist() == [0, 1, 4]
    assert safe_split(posterior, None, threshold=0.5).tolist() == [0, 1, 2, 4, 5]
    # later splits: the top floor(ratio N) by posterior, ties to the lower index
    assert safe_split(posterior, 0.5).tolist() == [0, 1, 4]
    assert safe_split(np.array([0.2, 0.7, 0.7, 0.7]), 0.5).tolist() == [1, 2]
    assert len(safe_split(np.linspace(0, 1, 100), 0.57)) == 57  # 0.57 x 100 is 56.99... in floating point


def test_safeclip_split_on_hand_made_similarities_starts_at_the_gmm_set_then_grows_by_the_step_to_the_cap():
    similarity, high = hand_made_similarities()
    safeclip = SafeCLIP(step=0.1, cap=0.75)
    assert safeclip.split(similarity).tolist() == high.tolist()  # GMM posterior >= 0.9: exactly the clean half
    assert safeclip.ratio == pytest.approx(0.6)
    by_similarity = np.argsort(-similarity)
    for expected in (60, 70, 75, 75):  # 0.5 + 0.1 per split, capped at 0.75
        safe = safeclip.split(similarity)
        assert safe.tolist() == sorted(by_similarity[:expected].tolist())
    safeclip.start(None)  # a new training starts at the GMM threshold again
    assert safeclip.ratio is None and len(safeclip.split(similarity)) == 50


def test_safeclip_plans_warm_ups_then_risky_unimodal_and_safe_clip_passes(poisoned):
    run = ContrastiveRun.build(fresh_model(), poisoned, RECIPE)
    safeclip = SafeCLIP(unimodal_warmup=1, clip_warmup=1, filter_lr=0.25, risky_unimodal=True)
    first, second, third = (safeclip.plan(run, epoch) for epoch in range(3))
    assert [(p.name, len(p.indices), p.scheduled) for p in first.passes] == [("unimodal", 64, True)]
    assert [(p.name, len(p.indices), p.scheduled, p.lr) for p in second.passes] == [
        ("clip", 64, False, 0.25 * RECIPE.lr)]
    risky, safe = third.passes
    assert (risky.name, safe.name) == ("unimodal", "clip")
    assert sorted(np.concatenate([risky.indices, safe.indices]).tolist()) == list(range(64))
    record = third.record
    poisoned_rows = poisoned.is_poisoned.numpy()
    assert record["safe"] == len(safe.indices) and record["poisoned"] == 8
    assert record["safe_poisoned"] == int(poisoned_rows[safe.indices].sum())
    assert len(record["similarity_poisoned"]) == 8 and len(record["similarity_clean"]) == 56
    without = SafeCLIP(unimodal_warmup=1, clip_warmup=1)
    for epoch in range(2):
        without.plan(run, epoch)
    [safe_only] = without.plan(run, 2).passes
    assert safe_only.name == "clip" and len(safe_only.indices) == record["safe"]


def test_safeclip_without_a_memory_bank_takes_view_1_as_view_2s_positive(clean):
    run = ContrastiveRun.build(fresh_model(), clean, RECIPE)
    batch = run.batch(np.arange(16))
    losses = []
    for bank_size in (0, 256):
        torch.manual_seed(3)
        run.generator.manual_seed(3)
        safeclip = SafeCLIP(bank_size=bank_size)
        losses.append(safeclip.unimodal_loss(run, batch))
        assert (safeclip.image_bank is None) == (bank_size == 0)
    # the first batch finds an empty bank, whose fallback is view 1 itself: the two losses agree
    assert torch.allclose(losses[0], losses[1])
    run.generator.manual_seed(3)
    image1, image2 = run.encode_images(run.augmented(batch.images), run.augmented(batch.images))
    text1, text2 = run.encode_texts(*batch.caption_views)
    expected = (info_nce(image2, image1, run.logit_scale) + info_nce(text2, text1, run.logit_scale)) / 2
    assert torch.allclose(losses[0], expected)


# memory bank

def test_memory_bank_answers_from_the_snapshot_before_the_update_and_forgets_the_oldest():
    bank = MemoryBank(2)
    fallback = unit(90)
    assert torch.equal(bank(unit(0), fallback), fallback)  # empty: the fallback; then 0 deg is enqueued
    query = unit(30).requires_grad_()
    nearest = bank(query, fallback)
    assert torch.allclose(nearest, unit(0)) and not nearest.requires_grad  # not the query itself, pushed after
    assert torch.allclose(bank.nearest(unit(40), fallback), unit(30))  # now it is in the bank
    bank.push(unit(60))  # evicts 0 deg, the oldest
    assert len(bank) == 2 and torch.allclose(bank.nearest(unit(-10), fallback), unit(30))
    bank.push(torch.cat([unit(100), unit(120), unit(140)]))  # more than fits: the last two stay
    assert torch.allclose(bank.nearest(unit(0), fallback), unit(120))
    kept = bank.nearest(unit(140), fallback)
    bank.push(torch.cat([unit(0), unit(0)]))
    assert torch.allclose(kept, unit(140))  # a copy, not a view of the ring


# RoCLIP

def test_roclip_matching_epochs_pair_images_with_pooled_captions_and_train_only_the_image_tower(clean):
    wrapper = fresh_model()
    run = ContrastiveRun.build(wrapper, clean, RECIPE)
    wrapper.model.eval()
    roclip = RoCLIP(every=2, pool_size=64, warmup=0)
    roclip.start(run)
    assert [roclip.matching(e, 4) for e in range(4)] == [False, True, False, True]
    assert [RoCLIP(warmup=0.5).matching(e, 8) for e in range(8)] == [False] * 5 + [True, False, True]
    assert [p.name for p in roclip.plan(run, 1).passes] == ["matching"]
    batch = run.batch(np.arange(16))
    pool = F.normalize(torch.randn(8, 128, generator=torch.Generator().manual_seed(0)), dim=-1)
    roclip.pool.push(pool)
    run.generator.manual_seed(5)
    loss = roclip.matching_loss(run, batch)
    run.generator.manual_seed(5)
    image, = run.encode_images(run.augmented(batch.images))
    expected = clip_loss(image, pool[(image @ pool.T).argmax(1)], run.logit_scale)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert len(roclip.pool) == 8 + 16  # the batch's captions entered the pool after the lookup
    loss.backward()
    assert all(p.grad is None for p in wrapper.model.transformer.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in wrapper.model.visual.parameters())

    run.generator.manual_seed(5)  # other epochs: the own (EDA) caption, and the pool still fills
    own = roclip.own_caption_loss(run, batch)
    run.generator.manual_seed(5)
    image, = run.encode_images(run.augmented(batch.images))
    text, = run.encode_texts(batch.caption_views[0])
    assert torch.allclose(own, clip_loss(image, text, run.logit_scale), atol=1e-6) and len(roclip.pool) == 40


# CleanCLIP

def test_cleanclip_loss_is_lambda1_clip_plus_lambda2_unimodal_on_a_fixed_batch(clean):
    wrapper = fresh_model()
    run = ContrastiveRun.build(wrapper, clean, RECIPE)
    model = wrapper.model.eval()
    batch = run.batch(np.arange(16))
    torch.manual_seed(7)
    loss = CleanCLIP(clip_weight=2.0, unimodal_weight=3.0).loss(run, batch)
    torch.manual_seed(7)
    view = autoaugmented(batch.images)
    assert not torch.equal(view, batch.images)

    def image_features(x):
        return F.normalize(model.encode_image(normalize(x, wrapper.mean, wrapper.std)), dim=-1)

    image0, image1 = image_features(batch.images), image_features(view)
    text0 = F.normalize(model.encode_text(batch.tokens), dim=-1)
    text1 = F.normalize(model.encode_text(batch.caption_views[0]), dim=-1)
    s, labels = model.logit_scale.exp(), torch.arange(16)
    multimodal = (F.cross_entropy(s * image0 @ text0.T, labels) + F.cross_entropy(s * text0 @ image0.T, labels)) / 2
    unimodal = (F.cross_entropy(s * image0 @ image1.T, labels) + F.cross_entropy(s * text0 @ text1.T, labels)) / 2
    assert torch.allclose(loss, 2 * multimodal + 3 * unimodal, atol=1e-5)
    assert not torch.allclose(multimodal, unimodal, atol=1e-3)


def test_clean_subset_draws_distinct_clean_pairs(clean):
    numbered = Pairs(clean.images, [f"pair {i}" for i in range(64)], clean.labels, CLASSES)
    subset = clean_subset(numbered, 20, seed=3)
    rows = [int(c.split()[1]) for c in subset.captions]
    assert len(set(rows)) == 20 and rows == sorted(rows)
    assert torch.equal(subset.images, clean.images[rows]) and torch.equal(subset.labels, clean.labels[rows])
    assert clean_subset(numbered, 20, seed=3).captions == subset.captions
    assert clean_subset(numbered, 20, seed=4).captions != subset.captions
    with pytest.raises(ValueError, match="1 to 64"):
        clean_subset(clean, 65)


# views, batches, schedule

def test_shifted_translates_by_whole_pixels_repeating_the_border():
    x = torch.rand(6, 3, 8, 8)
    out = shifted(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, [MAX_SHIFT] * 4, mode="replicate")
    for i in range(len(x)):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(2 * MAX_SHIFT + 1) for c in range(2 * MAX_SHIFT + 1)]
        assert any(torch.allclose(out[i], w, atol=1e-6) for w in windows)


def test_augmented_views_are_seeded_per_image_and_stay_in_range():
    x = torch.rand(8, 3, 32, 32)
    a = augmented(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, augmented(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, augmented(x, torch.Generator().manual_seed(2)))
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    same = augmented(x[:1].repeat(8, 1, 1, 1), torch.Generator().manual_seed(1))
    assert len({tuple(v.flatten()[:64].tolist()) for v in same}) == 8  # each image draws its own view


def test_colour_jitter_changes_most_views_and_keeps_the_hue_order():
    x = torch.tensor([0.7, 0.4, 0.2]).view(1, 3, 1, 1).expand(64, 3, 32, 32)  # an orange image: crops keep it
    views = augmented(x, torch.Generator().manual_seed(0))
    changed = (views - x).abs().amax((1, 2, 3)) > 1e-4
    assert 40 < changed.sum() < 64  # jitter with p 0.8
    r, g, b = views[:, :, 0, 0].T
    assert bool(((r > g) & (g > b)).all())  # brightness, contrast and saturation do not turn it another colour


def test_eda_swaps_or_deletes_words_of_the_cleaned_caption_and_views_are_drawn_once():
    caption = "A small red circle on the left, on a dark background."
    words = "a small red circle on the left on a dark background".split()
    rng = np.random.default_rng(0)
    views = [eda(caption, rng).split() for _ in range(200)]
    swapped = [v for v in views if sorted(v) == sorted(words)]
    deleted = [v for v in views if len(v) < len(words)]
    assert len(swapped) + len(deleted) == 200 and 60 < len(swapped) < 140
    assert all(sum(a != b for a, b in zip(v, words)) in (0, 2) for v in swapped)  # one swap: two positions change
    assert all(iter_subsequence(v, words) for v in deleted)
    assert eda("circle", rng) == "circle"
    tokenizer = clip_tiny().tokenizer
    pairs = Pairs(torch.zeros(3, 3, 4, 4), [caption] * 3, None, CLASSES)
    a, b = ContrastiveData.build(pairs, tokenizer, seed=0), ContrastiveData.build(pairs, tokenizer, seed=0)
    assert all(torch.equal(u, v) for u, v in zip(a.caption_views, b.caption_views))


def iter_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(word in it for word in short)


def test_batches_cover_each_index_once_in_near_equal_sizes():
    batches = _batches(np.arange(10, 140), 32, np.random.default_rng(0))
    assert [len(b) for b in batches] == [26] * 5
    assert sorted(np.concatenate(batches).tolist()) == list(range(10, 140))
    assert _batches(np.arange(0), 32, np.random.default_rng(0)) == []


def test_warmup_cosine_rises_linearly_then_decays_to_zero():
    assert warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(0.55, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 0.1) == pytest.approx(0.0, abs=1e-12)


# the registry and end-to-end runs

def test_build_training_defense_names_the_bad_name_or_param():
    assert set(TRAINING_DEFENSES) == {"none", "safeclip", "roclip", "cleanclip"}
    assert build_training_defense("roclip", every=3).every == 3
    with pytest.raises(ValueError, match="unknown training-time defense 'dpclip'"):
        build_training_defense("dpclip")
    with pytest.raises(ValueError, match="not \\['pool'\\]"):
        build_training_defense("roclip", pool=3)


@pytest.mark.parametrize("name", sorted(TRAINING_DEFENSES))
def test_a_short_training_run_of_each_objective_returns_its_history(name, clean, poisoned):
    params = {"safeclip": {"unimodal_warmup": 1, "clip_warmup": 1, "bank_size": 48},
              "roclip": {"warmup": 0}}.get(name, {})
    objective = build_training_defense(name, **params)
    pairs = clean_subset(clean, 48) if objective.finetunes else poisoned
    wrapper = fresh_model()
    with torch.no_grad():
        wrapper.model.logit_scale.fill_(5.0)  # above ln 100: the first step's clamp brings it back
    before = {k: v.clone() for k, v in wrapper.model.state_dict().items()}
    history = train_contrastive(wrapper, pairs, objective, RECIPE)
    assert [h["epoch"] for h in history] == [1, 2, 3] and not wrapper.model.training
    losses = [v for h in history for k, v in h.items() if k.startswith("loss_")]
    assert len(losses) >= 3 and all(math.isfinite(v) for v in losses)
    assert not torch.equal(before["visual.conv1.weight"], wrapper.model.state_dict()["visual.conv1.weight"])
    assert wrapper.model.logit_scale.item() <= math.log(100) + 1e-6
    if name == "safeclip":
        assert [h["phase"] for h in history] == ["unimodal warm-up", "clip warm-up", "split"]
        split = history[2]
        assert split["poisoned"] == 8 and 0 <= split["safe_poisoned"] <= min(8, split["safe"])
        assert "loss_clip" in split and "loss_unimodal" not in split and history[2]["steps"] >= 1  # no risky-set L_uni
    if name == "roclip":
        assert [h["matching"] for h in history] == [False, True, False]
        assert "loss_matching" in history[1] and "loss_clip" in history[2]


def test_training_is_deterministic_given_the_seed(poisoned):
    def weights(seed: int) -> torch.Tensor:
        wrapper = fresh_model()
        train_contrastive(wrapper, poisoned, SafeCLIP(unimodal_warmup=1, clip_warmup=0, bank_size=48),
                          ContrastiveRecipe(epochs=2, batch_size=32, seed=seed))
        return wrapper.model.visual.conv1.weight.detach().clone()

    first = weights(0)
    assert torch.equal(first, weights(0)) and not torch.equal(first, weights(1))
