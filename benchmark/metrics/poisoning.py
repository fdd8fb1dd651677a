"""Success of poisoning attacks on a zero-shot classifier, as the contrastive-poisoning literature scores it
(Carlini & Terzis 2022, arXiv:2106.09667; CleanCLIP's and RoCLIP's evaluations).

Backdoor success: the share of test images NOT of the target class t whose triggered version T(x) is
classified (top-1) as t,

    ASR = |{i : y_i != t, argmax_c f(T(x_i))_c = t}| / |{i : y_i != t}|,

(the target class's own images are left out: classifying them as t is no success). The same rate of a
model trained on clean data, on the same triggered images, is its baseline: what the trigger does alone.

Targeted poisoning success: the share of the attack's target images x'_j that the model classifies
(top-1, the unaltered image) as their target class y'_j.
"""
from __future__ import annotations

from torch import Tensor


def backdoor_success(triggered_logits: Tensor, labels: Tensor, target: int) -> float:
    """ASR over the images not of class ``target``: (N,K) logits of the triggered images, (N,) true labels."""
    others = labels != target
    if not bool(others.any()):
        raise ValueError(f"backdoor success needs test images not of the target class {target}")
    return (triggered_logits[others].argmax(1) == target).float().mean().item()


def targeted_success(logits: Tensor, targets: Tensor) -> float:
    """Share of the target images (N,K logits) classified top-1 as their attack target (N,)."""
    if len(targets) == 0:
        raise ValueError("targeted success needs at least one target image")
    return (logits.argmax(1) == targets).float().mean().item()
