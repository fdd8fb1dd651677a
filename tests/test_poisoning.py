"""Poisoning attacks on image-caption training data (``attacks/poisoning``): each trigger changes only what
it should, a poisoned set holds exactly round(rate N) recorded poisoned pairs and nothing else changes,
captions name the target, and bad input is a clear error. Small random images; no training."""
import itertools
import math

import numpy as np
import pytest
import torch

from attacks.poisoning import (POISONINGS, SHAPES_CAPTIONS, CaptionTemplates, Pairs, build_poisoning,
                               names_class)
from attacks.poisoning.badnets import BadNets
from attacks.poisoning.blended import Blended
from attacks.poisoning.label_consistent import LabelConsistent
from attacks.poisoning.targeted import TargetedPoisoning
from attacks.poisoning.wanet import WaNet
from benchmark.data.shapes import CLASSES, COLOURS, POSITIONS, SIZES, TEMPLATES, CaptionedShapes
from benchmark.metrics.poisoning import backdoor_success, targeted_success

TARGET = "star"


def random_pairs(n: int, seed: int = 0, size: int = 32) -> Pairs:
    """n random images; image i shows class i mod 8 and its caption names it."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSES)
    return Pairs(torch.rand(n, 3, size, size, generator=g), [f"a photo of a {CLASSES[y]}." for y in labels],
                 labels, CLASSES)


def shapes_pairs(n: int) -> Pairs:
    ds = CaptionedShapes("train", n=n)
    items = [ds[i] for i in range(n)]
    images = torch.from_numpy(np.stack([it.rgb for it in items])).permute(0, 3, 1, 2).float() / 255
    return Pairs(images, [it.caption for it in items], torch.tensor([it.label for it in items]), CLASSES)


def patch_corner(clean: torch.Tensor, out: torch.Tensor, pattern: torch.Tensor) -> tuple[int, int]:
    """The one top-left corner where ``out`` is ``clean`` with ``pattern`` pasted, every pixel outside it kept."""
    s = pattern.shape[-1]
    corners = []
    for r, q in itertools.product(range(clean.shape[1] - s + 1), range(clean.shape[2] - s + 1)):
        expected = clean.clone()
        expected[:, r:r + s, q:q + s] = pattern
        if torch.equal(out, expected):
            corners.append((r, q))
    assert len(corners) == 1, corners
    return corners[0]


def test_badnets_pastes_one_fixed_seeded_patch_at_a_random_position():
    x = random_pairs(12).images
    attack = BadNets(TARGET, seed=3)
    pattern = attack.pattern()
    assert pattern.shape == (3, 4, 4) and set(pattern.unique().tolist()) == {0.0, 1.0}
    out = attack.apply_trigger(x)
    corners = [patch_corner(x[i], out[i], pattern) for i in range(len(x))]
    assert min(len({r for r, _ in corners}), len({q for _, q in corners})) > 4  # placed at random, not at one spot
    assert torch.equal(attack.apply_trigger(x), out)  # the same test images get the same trigger
    assert torch.equal(BadNets(TARGET, seed=3).pattern(), pattern)
    assert not torch.equal(BadNets(TARGET, seed=4).pattern(), pattern)
    assert BadNets(TARGET, patch=6).apply_trigger(x).ne(x).any(1).sum((1, 2)).max() <= 36
    assert hash(BadNets(TARGET)) == hash(BadNets(TARGET)) and BadNets(TARGET) != BadNets(TARGET, seed=1)


def test_blended_is_exactly_the_blend_with_one_fixed_noise_image():
    x = random_pairs(6).images
    attack = Blended(TARGET, seed=1)
    out = attack.apply_trigger(x)
    key = (out - 0.8 * x) / 0.2  # what each image was blended with
    torch.testing.assert_close(key, key[:1].expand_as(key), rtol=0, atol=1e-5)  # the same for every image
    assert key.min() >= -1e-5 and key.max() <= 1 + 1e-5 and key.std() > 0.25  # uniform noise, not a flat image
    torch.testing.assert_close(out, 0.8 * x + 0.2 * attack.key(32, 32))
    assert torch.equal(Blended(TARGET, seed=1).key(32, 32), attack.key(32, 32))
    assert not torch.allclose(Blended(TARGET, seed=2).key(32, 32), attack.key(32, 32))
    torch.testing.assert_close(Blended(TARGET, alpha=0.5).apply_trigger(x), 0.5 * x + 0.5 * Blended(TARGET).key(32, 32))


def test_wanet_warps_by_a_field_fixed_by_the_seed_and_is_the_identity_at_strength_zero():
    attack = WaNet(TARGET, seed=5)
    grid = attack.warp_grid(32, 32)
    assert torch.equal(WaNet(TARGET, seed=5).warp_grid(32, 32), grid)
    assert not torch.allclose(WaNet(TARGET, seed=6).warp_grid(32, 32), grid)
    identity = WaNet(TARGET, s=0.0).warp_grid(32, 32)
    shift_px = (grid - identity).abs() * 31 / 2
    assert 0.4 < shift_px.mean() < 0.5 and shift_px.max() < 1  # s = 1: half a pixel on average, under s px
    smooth = WaNet(TARGET, k=4, s=0.5, seed=5).warp_grid(32, 32) - identity
    assert smooth.diff(dim=1).abs().mean() < 0.1 * (grid - identity).diff(dim=1).abs().mean()  # k = 4: smooth
    x = random_pairs(4).images
    torch.testing.assert_close(WaNet(TARGET, s=0.0).apply_trigger(x), x, rtol=0, atol=1e-5)
    assert (attack.apply_trigger(x) - x).abs().amax() > 0.05
    wide = torch.rand(2, 3, 16, 40, generator=torch.Generator().manual_seed(0))
    assert attack.warp_grid(16, 40).shape == (1, 16, 40, 2) and attack.apply_trigger(wide).shape == wide.shape
    torch.testing.assert_close(WaNet(TARGET, s=0.0).apply_trigger(wide), wide, rtol=0, atol=1e-5)
    # a ramp along x (along y) samples back the grid's x (y) coordinate: the field moves pixels where it says
    ramp = torch.linspace(0, 1, 32)
    ramps = torch.stack([ramp.expand(3, 32, 32), ramp[:, None].expand(3, 32, 32)])
    out = attack.apply_trigger(ramps)
    torch.testing.assert_close(out[0, 0], (grid[0, ..., 0] + 1) / 2, rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1, 0], (grid[0, ..., 1] + 1) / 2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["badnets", "blended", "wanet"])
def test_a_backdoor_poisons_exactly_the_stated_pairs_and_records_them(name):
    train = random_pairs(40)
    before = train.images.clone()
    attack = build_poisoning(name, target=TARGET, rate=0.1, seed=2)
    out = attack.poison(train)
    assert len(out) == 40 and attack.count(40) == 4 and len(out.records) == 4
    recorded = sorted(r.index for r in out.records)
    changed_images = out.images.ne(train.images).flatten(1).any(1).nonzero().flatten().tolist()
    changed_captions = [i for i in range(40) if out.captions[i] != train.captions[i]]
    assert recorded == changed_images == changed_captions and len(set(recorded)) == 4
    assert out.is_poisoned.nonzero().flatten().tolist() == recorded
    assert all(r.kind == name and r.source == r.index and r.target == TARGET for r in out.records)
    assert all(names_class(out.captions[i], TARGET) for i in recorded)
    assert torch.equal(out.labels, train.labels) and torch.equal(train.images, before)  # the input is left as it was
    if name == "badnets":
        for i in recorded:
            patch_corner(train.images[i], out.images[i], attack.pattern())
    else:  # a fixed trigger: the poisoned image is the test-time trigger of the clean one
        torch.testing.assert_close(out.images[recorded], attack.apply_trigger(train.images[recorded]))
    again = build_poisoning(name, target=TARGET, rate=0.1, seed=2).poison(train)
    assert torch.equal(again.images, out.images) and again.captions == out.captions
    other = build_poisoning(name, target=TARGET, rate=0.1, seed=3).poison(train)
    assert sorted(r.index for r in other.records) != recorded


def test_poison_counts_round_the_rate_and_rate_zero_poisons_nothing():
    train = random_pairs(50)
    assert [BadNets(TARGET, rate=r).count(50) for r in (0.0, 0.01, 0.03, 0.05, 1.0)] == [0, 1, 2, 3, 50]
    assert len(BadNets(TARGET, rate=0.05).poison(train).records) == 3
    clean = BadNets(TARGET, rate=0.0).poison(train)
    assert clean.records == () and not clean.is_poisoned.any() and torch.equal(clean.images, train.images)
    assert len(Blended(TARGET, rate=1.0).poison(train).records) == 50


def test_label_consistent_poisons_only_pairs_whose_caption_names_the_target_and_keeps_it():
    train = shapes_pairs(64)  # the shapes' own captions; 8 of them name a star
    star = CLASSES.index(TARGET)
    naming = [i for i, c in enumerate(train.captions) if names_class(c, TARGET)]
    assert naming == (train.labels == star).nonzero().flatten().tolist()
    out = LabelConsistent(TARGET, rate=6 / 64, seed=1).poison(train)
    recorded = sorted(r.index for r in out.records)
    assert len(recorded) == 6 and all(train.labels[i] == star for i in recorded)
    assert out.captions == list(train.captions)
    assert out.images.ne(train.images).flatten(1).any(1).nonzero().flatten().tolist() == recorded
    with pytest.raises(ValueError, match="only 8 of the 64"):
        LabelConsistent(TARGET, rate=9 / 64).poison(train)


def test_targeted_poisoning_pairs_held_out_target_images_with_captions_naming_the_target():
    train, held_out = random_pairs(40, seed=0), random_pairs(16, seed=1)
    attack = TargetedPoisoning(TARGET, rate=0.2, targets=3, seed=4)
    out = attack.poison(train, held_out)
    assert len(out) == 48 and len(out.records) == 8  # round(0.2 * 40) pairs added, the train pairs kept
    assert torch.equal(out.images[:40], train.images) and out.captions[:40] == list(train.captions)
    assert [r.index for r in out.records] == list(range(40, 48)) and out.is_poisoned.sum() == 8
    star = CLASSES.index(TARGET)
    assert len(out.target_images) == 3 and set(out.target_images.values()) == {TARGET}
    assert all(held_out.labels[j] != star for j in out.target_images)
    mostly_stars = Pairs(held_out.images[:10], held_out.captions[:10], torch.tensor([star] * 7 + [0, 1, 2]), CLASSES)
    assert sorted(attack.poison(train, mostly_stars).target_images) == [7, 8, 9]  # never an image of the target
    assert sorted(np.bincount([r.source for r in out.records]).tolist())[-3:] == [2, 3, 3]
    for r in out.records:
        assert r.source in out.target_images and r.kind == "targeted" and r.target == TARGET
        assert torch.equal(out.images[r.index], held_out.images[r.source])
        assert out.labels[r.index] == held_out.labels[r.source]
        assert names_class(out.captions[r.index], TARGET)
        assert not any(names_class(out.captions[r.index], c) for c in CLASSES if c != TARGET)
    baseline = TargetedPoisoning(TARGET, rate=0.0, targets=3, seed=4).poison(train, held_out)
    assert baseline.records == () and baseline.target_images == out.target_images  # same images, measured clean


def test_poisoned_captions_are_the_datasets_templates_filled_with_the_target():
    rng = np.random.default_rng(0)
    fills = {template.format(cls=TARGET, size=size, colour=colour, pos=phrase, bg=bg)
             for template in TEMPLATES for size in SIZES for colour in COLOURS
             for phrase, _, _ in POSITIONS.values() for bg in ("dark", "grey", "light")}
    fills = {f.replace("a orange", "an orange") for f in fills}
    captions = SHAPES_CAPTIONS(TARGET, 200, rng)
    assert set(captions) <= fills and len(set(captions)) > 100
    assert any("an orange" in c for c in captions)  # the article follows the word drawn
    own = CaptionTemplates(("a photo of a {}.", "the {cls} in a video game."))
    assert set(own("apple", 50, rng)) == {"a photo of an apple.", "the apple in a video game."}


@pytest.mark.parametrize("rate", [1.5, -0.1, math.nan])
def test_a_rate_outside_0_1_is_an_error_naming_it(rate):
    for cls in POISONINGS.values():
        with pytest.raises(ValueError, match=f"got {rate}"):
            cls(TARGET, rate=rate)


def test_an_unknown_target_class_or_missing_input_is_an_error_naming_it():
    train = random_pairs(16)
    for name in POISONINGS:
        with pytest.raises(ValueError, match="'zebra' is not one of the classes"):
            build_poisoning(name, target="zebra").poison(train, random_pairs(16, seed=1))
    with pytest.raises(ValueError, match="held-out set"):
        TargetedPoisoning(TARGET).poison(train)
    with pytest.raises(ValueError, match="rate 0.1 gives 2"):
        TargetedPoisoning(TARGET, rate=0.1, targets=3).poison(train, random_pairs(16, seed=1))
    with pytest.raises(ValueError, match="unknown poisoning attack 'sig'"):
        build_poisoning("sig", target=TARGET)
    with pytest.raises(ValueError, match=r"not \['alpha'\]"):
        build_poisoning("badnets", target=TARGET, alpha=0.3)
    with pytest.raises(ValueError, match="do not pair up"):
        Pairs(train.images, list(train.captions)[:-1], train.labels, CLASSES)


def test_backdoor_success_leaves_out_the_target_class_and_targeted_success_counts_top1():
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # predictions 1, 1, 0, 1
    labels = torch.tensor([0, 0, 0, 1])  # the last image is of the target class 1: not counted
    assert backdoor_success(logits, labels, target=1) == pytest.approx(2 / 3)
    assert targeted_success(logits[:3], torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="not of the target class 1"):
        backdoor_success(logits[3:], labels[3:], target=1)
