"""Task adapter for image classification: CLIP zero-shot (class-prompt logits) and retrieval posed as
classification over a gallery (the logits are scaled similarities to every gallery item, the label is
the index of the query's match, so top-k accuracy is recall@k).

The model maps the attack-space image u (N,C,H,W) in [0,1] to class logits (N,K); the target is the
label (N,). Attack objective: cross-entropy; for retrieval it pushes the query's embedding away from its
match. Black-box and C&W-style attacks use the margin m = Z_y - max_{j != y} Z_j of Carlini & Wagner
(2017, eq. f_6): an attack succeeds when m < 0.

A query has one modality (RGB, or depth for depth -> RGB retrieval): a cell's default modality, rgbd
("every input the model takes"), attacks the query; naming the other modality is an error.

Metrics: top-k accuracy (k = 1, 5, 10; robust accuracy under attack), the attack success rate
ASR = #{clean-correct images misclassified under attack} / #{clean-correct images}, and for models with
an image-depth matching head (rgbd-clip) the matching accuracy ITM (see ``matching_accuracy``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.ensemble import MeanLogits, SurrogateEnsemble
from attacks.threat import AttackSpace, ThreatModel
from benchmark.data.labelled import LabelledBatch, make_labelled_batch
from benchmark.metrics import CLASSIFICATION_METRICS
from benchmark.suite import Cell
from defenses import DEFENSES, DefendedModel, Defense
from models.base import ModelView

TOP_K = (1, 5, 10)


@dataclass
class Prediction:
    """What the scored model returns on a batch: logits (N,K), and the query images they score, which a
    model with a matching head reads again."""

    logits: Tensor
    query: Tensor


def rank_of_label(logits: Tensor, label: Tensor) -> Tensor:
    """(N,) the label's position when the classes are sorted by logit, 0 = top-1. Ties go to the lower
    class index, as ``argmax`` (and so every library attack) decides them; a row with a NaN logit ranks
    its label last (K): a degenerate output is never correct. The one rule for "correct" everywhere."""
    true = logits.gather(1, label[:, None])
    index = torch.arange(logits.shape[1], device=logits.device)
    ahead = (logits > true) | ((logits == true) & (index < label[:, None]))
    return torch.where(logits.isnan().any(1), logits.shape[1], ahead.sum(1))


def margin(logits: Tensor, label: Tensor) -> Tensor:
    """(N,) Z_y - max_{j != y} Z_j."""
    true = logits.gather(1, label[:, None])[:, 0]
    other = logits.scatter(1, label[:, None], float("-inf")).amax(1)
    return true - other


class ClassifierView(ModelView):
    """u (attack space) -> the classifier's logits on the composed query image."""

    def __init__(self, model: nn.Module, space: AttackSpace):
        super().__init__(model)
        self.space = space

    def forward(self, u: Tensor) -> Tensor:
        rgb, depth = self.space.compose(u)
        return self.model(rgb if rgb is not None else depth)


class ClassificationTask:
    name = "classification"
    metrics = CLASSIFICATION_METRICS
    intervals = ("top1",)  # per-image means: the leaderboard gives their bootstrap interval, and ASR's
    early_stop = True  # once misclassified an image needs no more queries
    score_without_patch = False  # a label has no pixels to exclude

    def make_batch(self, samples: Sequence[Any], model: nn.Module) -> LabelledBatch:
        return make_labelled_batch(samples, model.input_size)

    @staticmethod
    def _needs(dataset: Any) -> tuple[str, str]:
        """The model method ``dataset`` needs, and what it gives the model."""
        return ("set_gallery", "an image gallery") if hasattr(dataset, "gallery") else ("set_classes", "prompts")

    def reads(self, model: nn.Module, dataset: Any) -> bool:
        """Whether ``model`` can be scored on ``dataset``: a classification dataset whose queries it scores
        the way the model does (against prompts, or against a gallery of the other modality)."""
        return dataset.task == self.name and hasattr(model, self._needs(dataset)[0])

    def prepare(self, model: nn.Module, dataset: Any) -> None:
        """Give the model what ``dataset``'s queries are scored against: class prompts, or a gallery."""
        wants, has = self._needs(dataset)
        if not hasattr(model, wants):
            raise ValueError(f"dataset {dataset.name!r} scores queries against {has}; "
                             f"{type(model).__name__} takes no {has}")
        if wants == "set_gallery":
            model.set_gallery(dataset.gallery(model.input_size), dataset.query)
        else:
            model.set_classes(dataset.classnames, dataset.templates)

    def bind(self, cell: Cell, dataset: Any) -> Cell:
        """The cell attacking ``dataset``'s query modality: rgbd (every input) becomes that modality. A
        defense must act on that modality."""
        if cell.defense is not None and cell.defense["modality"] not in (dataset.query, "rgbd"):
            raise ValueError(f"cell {cell.attack} with defense {cell.defense_label}: the model's queries on "
                             f"{dataset.name!r} are {dataset.query} images; it takes no {cell.defense['modality']}")
        if cell.defense is not None and DEFENSES[cell.defense["name"]].needs_rgbd:
            raise ValueError(f"cell {cell.attack} with defense {cell.defense_label}: the defense compares RGB with "
                             f"depth; the model's queries on {dataset.name!r} are {dataset.query} images alone")
        modality = cell.threat.modality
        if modality == "rgbd":
            return replace(cell, threat=replace(cell.threat, modality=dataset.query))
        if modality != dataset.query:
            raise ValueError(f"cell {cell.attack} attacks {modality}, but the queries of dataset {dataset.name!r} "
                             f"are {dataset.query} images")
        return cell

    def defended(self, model: nn.Module, defense: Defense, cell: Cell) -> nn.Module:
        """The classifier behind ``defense``, which purifies its query (the bound cell's modality), or that
        a classifier-level defense (PatchCleanser) wraps."""
        if getattr(defense, "wraps_model", False):
            return defense.wrap(model)
        return DefendedModel(model, defense, query=cell.threat.modality)

    def attack_space(self, batch: LabelledBatch, threat: ThreatModel) -> AttackSpace:
        return AttackSpace(batch.rgb, batch.depth, threat)

    def attacked_model(self, model: nn.Module, space: AttackSpace, batch: LabelledBatch | None = None) -> nn.Module:
        """The classifier on the composed query; ``batch`` is not needed (labels have no size)."""
        if isinstance(model, SurrogateEnsemble):
            return MeanLogits([self.attacked_model(m, space, batch) for m in model.members])
        return ClassifierView(model, space)

    def forward(self, model: nn.Module, rgb: Tensor | None, depth: Tensor | None, batch: LabelledBatch) -> Prediction:
        query = rgb if rgb is not None else depth
        return Prediction(model(query), query)

    def gallery(self, rgb: Tensor | None, depth: Tensor | None, scored: Prediction, batch: LabelledBatch,
                k: int) -> dict[str, np.ndarray]:
        """The first ``k`` images of a scored batch as the report shows them: the (attacked) 8-bit query, the
        predicted and the true class index."""
        query = scored.query[:k].detach().float().clamp(0, 1).permute(0, 2, 3, 1)
        return {"names": np.array(batch.names[:k]), "query": (query * 255).round().byte().cpu().numpy(),
                "pred": scored.logits[:k].argmax(1).cpu().numpy(), "label": batch.target[:k].cpu().numpy()}

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N,) cross-entropy, what gradient attacks maximise."""
        return F.cross_entropy(logits, target, reduction="none")

    def reference(self, clean_logits: Tensor) -> Tensor:
        """The target to use when no label is given: the clean prediction."""
        return clean_logits.argmax(1)

    def blackbox_objective(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N,) the negated margin, to maximise from outputs alone."""
        return -margin(logits, target)

    def cw_objective(self, logits: Tensor, target: Tensor, kappa: float = 0.0) -> Tensor:
        """(N,) C&W f_6 to minimise: max(m, -kappa)."""
        return margin(logits, target).clamp_min(-kappa)

    def success(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N,) bool: the label is not top-1 (see :func:`rank_of_label`)."""
        return rank_of_label(logits, target) != 0

    def object_mask(self, target: Tensor) -> None:
        """Labels say nothing about where the object is: patch placement falls back to random."""
        return None

    # torchattacks and ART take a classifier as it is
    def torchattacks_model(self, dense: nn.Module) -> nn.Module:
        return dense

    def torchattacks_labels(self, target: Tensor) -> Tensor:
        return target

    def art_model(self, dense: nn.Module) -> nn.Module:
        return dense

    def art_loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def art_labels(self, target: Tensor, nb_classes: int) -> np.ndarray:
        return F.one_hot(target, nb_classes).cpu().numpy().astype(np.float32)


    # scoring
    def score(self, model: nn.Module, prediction: Prediction, batch: LabelledBatch,
              exclude: Tensor | None = None) -> list[tuple[dict[str, float], dict[str, np.ndarray]]]:
        """Per image: the rank of the true class (0 = top-1, :func:`rank_of_label`), top-k hits and, for a model with a matching
        head, its ITM accuracy; no curves. ``exclude`` (a patch mask) does not apply to a label."""
        logits = prediction.logits
        rank = rank_of_label(logits, batch.target).cpu()
        scores = [{"rank": int(r), **{f"top{k}": float(r < k) for k in TOP_K}} for r in rank]
        if hasattr(model, "matching_accuracy"):
            for s, itm in zip(scores, model.matching_accuracy(prediction.query, batch.target, logits).tolist()):
                s["ITM"] = itm
        return [(s, {}) for s in scores]

    def summarise(self, records: list[dict], curves: dict[str, np.ndarray]) -> dict[str, float]:
        names = [f"top{k}" for k in TOP_K] + (["ITM"] if records and "ITM" in records[0] else [])
        return {m: float(np.mean([r[m] for r in records])) for m in names}

    def successes(self, records: list[dict], clean: list[dict]) -> list[bool]:
        """Per image correct in the clean cell: whether the attack makes it wrong. Their mean is ASR."""
        correct = {r["image"] for r in clean if r["top1"] == 1.0}
        return [r["top1"] == 0.0 for r in records if r["image"] in correct]
