"""SafeCLIP (Yang, Gao, Mirzasoleiman, "Better Safe than Sorry: Pre-training CLIP against Targeted Data
Poisoning and Backdoor Attacks", ICML 2024, arXiv:2310.05862): pre-train CLIP so that poisoned pairs never
get the CLIP loss.

1. Unimodal warm-up: image-image and text-text contrastive learning on all pairs, two views each (image
   views; EDA caption views), the positive of view 2 of pair i being the nearest neighbour of its view 1
   in a memory bank of recent view-1 embeddings (NNCLR):
   L_uni = (CE(s V2_img NN(V1_img)^T, I) + CE(s V2_txt NN(V1_txt)^T, I)) / 2.
2. One epoch of CLIP loss on all pairs at a low, constant learning rate, on two augmented pairings:
   L_clip = (CE(s U1 V2^T, I) + CE(s V1 U2^T, I)) / 2 (image view 1 with caption view 2, and the reverse).
3. Every later epoch: the cosine similarity of every pair, a two-component Gaussian mixture fitted to them,
   p_i = the posterior of the higher-mean component; the safe set is {i : p_i >= 0.9} at the first split,
   then the top floor(r N) pairs by p, r growing by a step after each split up to a cap (r starts at the
   first safe share); then L_uni over the risky pairs (off by default at our scale, below), then L_clip over
   the safe ones, two passes with one optimizer.

Reference defaults (BigML-CS-UCLA/SafeCLIP ``src/parser.py``, ``main.py``): 32 epochs counting 5 unimodal and
1 CLIP warm-up epochs; batch 128; lr 5e-4 for both kinds of pass, 5e-6 (1/100) for the CLIP warm-up epoch;
memory banks of 256; threshold 0.9; step 0.01 N; cap 0.85 N; GMM by scikit-learn, ``random_state=0``.

Scaled to our data (6000 32x32 pairs, 47 steps per epoch where the reference makes about 7800 on 1M):
- warm-ups: ``unimodal_warmup`` 2 epochs and ``clip_warmup`` 1 of a 24-epoch training (the reference's 6
  of 32 are 19% of its epochs; ours 12.5%);
- ``filter_lr`` 0.25 of the peak lr for the CLIP warm-up epoch, not 1/100: the reference's 5e-6 over ~7800
  steps moves the weights by lr x steps = 0.04; at 1/100 of our 3e-3 our 47 steps would move them by
  0.0014, too little to align the two towers before the split; 0.25 x 3e-3 x 47 = 0.035. Measured at
  the first split (6000 pairs, BadNets at 1%, seed 0, 12 epochs; filter_lr: safe share, poisoned pairs
  in it, P(clean pair more similar than poisoned)): 0.01: 15%, 3/60, 0.75; 0.05: 62%, 8/60, 0.87;
  0.25: 61%, 6/60, 0.89; 1.0: 43%, 2/60, 0.93;
- ``step`` 0.1 per epoch: the reference grows the safe set by 0.01 N over 26 post-warm-up epochs (0.26 N
  in all); at our scale every pair kept out of the CLIP loss costs clean accuracy (below), so the safe set
  grows to the cap within 3-4 splits;
- no unimodal pass on the risky set after the warm-ups (``risky_unimodal=False``; the reference's
  ``--cross_inmodal`` flag turns it off there too), and 1.5x the grid's epochs (``epoch_factor``; the
  warm-ups and the split leave the CLIP loss fewer pair-steps than plain CLIP gets): at our scale the
  reference default loses most of the clean accuracy (measurements below);
- memory banks of 256 as the reference (two batches of 128; the bank is sized by the batch, not the data).
Measured at the grid's budget (6000 pairs x 16 epochs, seed 0; plain CLIP: top-1 0.94; BadNets at rate 0.03:
success 0.93 undefended), with these defaults (24 epochs): **top-1 0.918, BadNets success 0.089**, 8 of the 180
poisoned pairs in the first safe set, 3 in the last; Blended (rate 0.03): success 0.174, top-1 0.902;
targeted poisoning (rate 0.03, 8 targets): 1 of 8 targets taken (0.125, undefended 8/8), top-1 0.863. The
reference's settings at 16 epochs (risky-set L_uni, step 0.04) kept the backdoor out too (0.07) but at top-1
0.24. Ablations at 16 epochs on clean pairs: every
pair safe 0.78; the split without risky-set L_uni 0.58 (0.65 with step 0.1); no unimodal warm-up 0.22; no
memory bank (``bank_size=0``) 0.27; risky-set L_uni weighted 0.1 (step 0.1, BadNets pairs) 0.35.
Tried to make a cell cheaper (two pairings make SafeCLIP about 3x plain CLIP: 750-850 s a cell on one thread),
not kept: L_clip on one pairing (an image view with one EDA caption view) with step 0.05 takes 500-530 s but
undertrains (last-epoch L_clip 1.5 where two pairings reach 1.1): seed 0 top-1 / success BadNets 0.910 / 0.080,
Blended 0.715 / 0.219, targeted 0.777 / 0.125. Nor two pairings with step 0.05 (seed 2, top-1 / success, step
0.1 -> 0.05): BadNets 0.906 / 0.174 -> 0.859 / 0.196, targeted 0.859 / 0.375 -> 0.852 / 0.375; the poisons sit
in the capped safe set (15-20 of 180 at every later split), not only while it grows. Known limit, kept as the
reference: with full covariances the lower component, when it is the wider, takes over again in the upper tail,
so the posterior falls for the most similar pairs (in a one-pairing run no pair reached 0.9 at the first split,
which emptied the safe set). The safe share's floor is robust to float error (0.57 N of 100 is 57, not 56); ties
in p keep the lower index first (a stable sort; the reference's ``torch.argsort`` leaves them in any order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.mixture import GaussianMixture
from torch import Tensor

from benchmark.training.contrastive import Batch, ContrastiveRun, EpochPlan, MemoryBank, Objective, Pass, info_nce


def clean_posterior(similarity: np.ndarray) -> np.ndarray:
    """(N,) posterior of the higher-mean component of a two-component 1-D Gaussian mixture fitted to the
    pairs' similarities (scikit-learn, full covariance, k-means initialisation, ``random_state=0``, as
    the reference)."""
    values = np.asarray(similarity, dtype=np.float64).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, random_state=0).fit(values)
    return gmm.predict_proba(values)[:, int(np.argmax(gmm.means_.ravel()))]


def safe_split(posterior: np.ndarray, ratio: float | None, threshold: float = 0.9) -> np.ndarray:
    """The safe pairs' indices, ascending: those with ``posterior >= threshold`` when ``ratio`` is None
    (the first split), else the top floor(ratio N) by posterior (ties: lower index first)."""
    if ratio is None:
        return np.flatnonzero(posterior >= threshold)
    keep = math.floor(len(posterior) * ratio + 1e-9)
    return np.sort(np.argsort(-posterior, kind="stable")[:keep])


@dataclass
class SafeCLIP(Objective):
    """SafeCLIP's schedule and losses (module docstring): warm-ups, then per epoch the GMM split, L_uni on
    the risky set and L_clip on the safe set. The history records each split: the safe set's size, how
    many poisoned pairs it holds, and the similarities of poisoned and clean pairs."""

    name = "safeclip"
    unimodal_warmup: int = 2
    clip_warmup: int = 1
    filter_lr: float = 0.25  # the CLIP warm-up epoch's constant lr, as a fraction of the recipe's lr
    threshold: float = 0.9
    step: float = 0.1
    cap: float = 0.85
    bank_size: int = 256  # 0: no memory bank, view 1 itself is view 2's positive (the reference without --memory_bank)
    risky_unimodal: bool = False  # L_uni on the risky set after the warm-ups (the reference's --cross_inmodal)
    epoch_factor: float = 1.5
    ratio: float | None = field(default=None, init=False)  # the safe share of the next split
    image_bank: MemoryBank | None = field(init=False, repr=False)
    text_bank: MemoryBank | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.cap <= 1 or self.step < 0 or not 0 <= self.threshold <= 1:
            raise ValueError(f"SafeCLIP needs 0 < cap <= 1, step >= 0 and a threshold in [0, 1], got cap "
                             f"{self.cap}, step {self.step}, threshold {self.threshold}")
        self.start(None)

    def start(self, run: ContrastiveRun | None) -> None:
        self.ratio = None
        banks = (MemoryBank(self.bank_size), MemoryBank(self.bank_size)) if self.bank_size else (None, None)
        self.image_bank, self.text_bank = banks

    def split(self, similarity: np.ndarray) -> np.ndarray:
        """The safe indices for this epoch's similarities; advances the safe share for the next split."""
        safe = safe_split(clean_posterior(similarity), self.ratio, self.threshold)
        self.ratio = min((len(safe) / len(similarity) if self.ratio is None else self.ratio) + self.step, self.cap)
        return safe

    def plan(self, run: ContrastiveRun, epoch: int) -> EpochPlan:
        everything, lr = np.arange(len(run.data)), run.recipe.lr
        if epoch < self.unimodal_warmup:
            return EpochPlan([Pass("unimodal", everything, self.unimodal_loss, lr)], {"phase": "unimodal warm-up"})
        if epoch < self.unimodal_warmup + self.clip_warmup:
            return EpochPlan([Pass("clip", everything, self.clip_loss, self.filter_lr * lr, scheduled=False)],
                             {"phase": "clip warm-up"})
        similarity = run.pair_similarity().numpy()
        safe = self.split(similarity)
        risky = np.setdiff1d(everything, safe)
        poisoned = run.data.is_poisoned.numpy()
        record = {"phase": "split", "safe": len(safe), "safe_poisoned": int(poisoned[safe].sum()),
                  "poisoned": int(poisoned.sum()), "similarity_poisoned": similarity[poisoned].tolist(),
                  "similarity_clean": similarity[~poisoned].tolist()}
        passes = [Pass("unimodal", risky, self.unimodal_loss, lr)] if self.risky_unimodal else []
        return EpochPlan(passes + [Pass("clip", safe, self.clip_loss, lr)], record)

    def unimodal_loss(self, run: ContrastiveRun, batch: Batch) -> Tensor:
        """L_uni: view 2 of each image and caption against the bank's nearest neighbour of its view 1 (the
        bank as it was before this batch; the view-1 embeddings are then enqueued)."""
        image1, image2 = run.encode_images(run.augmented(batch.images), run.augmented(batch.images))
        text1, text2 = run.encode_texts(*batch.caption_views)
        if self.image_bank is not None:
            image1, text1 = self.image_bank(image1, image1), self.text_bank(text1, text1)
        scale = run.logit_scale
        return (info_nce(image2, image1, scale) + info_nce(text2, text1, scale)) / 2

    @staticmethod
    def clip_loss(run: ContrastiveRun, batch: Batch) -> Tensor:
        """L_clip on two augmented pairings: image view 1 with caption view 2, caption view 1 with image view 2."""
        image1, image2 = run.encode_images(run.augmented(batch.images), run.augmented(batch.images))
        text1, text2 = run.encode_texts(*batch.caption_views)
        scale = run.logit_scale
        return (info_nce(image1, text2, scale) + info_nce(text1, image2, scale)) / 2
