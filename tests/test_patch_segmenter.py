"""The learned patch segmenter's recipe (benchmark/training/segmenter.py): a short training on patches
crafted on a briefly trained jldcf-tiny finds held-out adversarial patches crafted on the test split,
and flags little of clean images. The shipped recipe's numbers are in its checkpoint's sidecar."""
import json
from dataclasses import replace

import numpy as np
import torch

from benchmark.training.segmenter import RECIPES, SegmenterRecipe, paste_random, train_segmenter
from benchmark.zoo import resolve_model


def test_paste_random_marks_exactly_the_pasted_squares():
    rng = np.random.default_rng(0)
    rgb, depth = torch.zeros(32, 3, 40, 40), torch.zeros(32, 1, 40, 40)
    bank = [torch.ones(4, 6, 6)]
    recipe = replace(SegmenterRecipe(), adversarial_fraction=1.0, clean_fraction=0.25)
    prgb, pdepth, mask = paste_random(rgb, depth, bank, recipe, rng)
    changed = ((prgb != 0).any(1, keepdim=True) | (pdepth != 0)).float()
    assert torch.equal(changed, mask)  # the bank's patch is all ones: what changed is what is marked
    area = mask.flatten(1).mean(1)
    assert 0 < (area == 0).sum() < 32 and area.max() <= recipe.areas[1] + 0.01
    assert (prgb != 0).any() and (pdepth != 0).any() and not torch.equal(prgb.any(1, keepdim=True), pdepth.bool())


def test_a_short_training_finds_held_out_adversarial_patches(pinned_tiny, tmp_path):
    surrogate = resolve_model("jldcf-tiny", str(pinned_tiny))
    recipe = replace(RECIPES["patch-segmenter"], steps=150, bank_images=16, test_images=16, train_images=160)
    out = tmp_path / "patch-segmenter.pt"
    scores = train_segmenter("patch-segmenter", out, recipe, surrogate=surrogate)
    assert scores["NmIoU"] >= 0.6 and scores["clean_flagged"] <= 0.02, scores
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["surrogate_checkpoint"] == surrogate.checkpoint_sha256 and sidecar["test"] == scores
