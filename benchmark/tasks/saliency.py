"""Task adapter for dense RGB-D saliency: what an attack maximises, how the model is wrapped for the
attack libraries, and how predictions are scored.

Attack objective: the mean per-pixel binary cross-entropy between the predicted map and the GT at
network resolution, L(z, y) = mean_p BCE(sigmoid(z_p), y_p). torchattacks hard-codes cross-entropy
over a class axis, so the dense model is exposed as two-class logits cat([0, z], 1) with labels y:
CE over (N,2,H,W) equals that BCE (a raw (N,1,H,W) map would give zero gradient silently). ART has no
dense estimator: its classifier wraps the flattened (N, H*W) logits with a pixel-BCE loss.

Our own attacks ask the task for the rest: a black-box objective (the same BCE, against the GT or
the clean prediction), a C&W-style hinge, when an attack has succeeded, and where the object is.

Batches are built by the model's official test loader (``input_loader``). A model that decides at each
image's GT size (``takes_gt_sizes``: D3Net's depth depurator) gets the batch's GT sizes both in the
attacked view and when scored, so the attacked function is the scored one.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.ensemble import MeanLogits, SurrogateEnsemble
from attacks.threat import AttackSpace, ThreatModel
from benchmark.data import Batch, Sample, make_batch
from benchmark.metrics import SALIENCY_METRICS
from benchmark.metrics import saliency as sod
from benchmark.metrics.masked import MaskedSODMetrics
from benchmark.suite import Cell
from defenses import DEFENSES, DefendedModel, Defense
from models.base import ModelView


def resize_antialiased(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of an (N,C,H,W) batch to (S,S), antialiased when shrinking: a plain bilinear
    shrink by more than 2x reads only some of the source pixels, and the others would get no gradient."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])


def gt_size_kwargs(model: nn.Module, gt_sizes: Sequence[tuple[int, int]] | None) -> dict[str, Any]:
    """``{"gt_sizes": ...}`` for a model that decides at each image's GT size, else nothing."""
    return {"gt_sizes": gt_sizes} if gt_sizes is not None and getattr(model, "takes_gt_sizes", False) else {}


class AttackSpaceModel(ModelView):
    """u (attack space) -> the model's (N,1,S,S) logits, with the clean unattacked modality filled in.
    A model of another input size (a transfer surrogate) sees the composed input resized to its own,
    and its logits are resized back to the target's resolution (antialiased where shrinking). A model
    that takes GT sizes gets ``gt_sizes``, one (H, W) per image."""

    def __init__(self, model: nn.Module, space: AttackSpace, gt_sizes: Sequence[tuple[int, int]] | None = None):
        super().__init__(model)
        self.space = space
        self.size = space.rgb.shape[-1]
        self.gt_sizes = gt_sizes

    def forward(self, u: Tensor) -> Tensor:
        if u.shape[-1] != self.size:  # input-diversity attacks (DI-FGSM) resize and pad their input
            u = F.interpolate(u, size=(self.size, self.size), mode="bilinear", align_corners=False)
        rgb, depth = self.space.compose(u)
        own = self.model.input_size
        logits = self.model(resize_antialiased(rgb, own), resize_antialiased(depth, own),
                            **gt_size_kwargs(self.model, self.gt_sizes))
        return resize_antialiased(logits, self.size)

    def copies_of(self, index: Tensor) -> AttackSpaceModel:
        """This view for a batch whose row j is a copy of image ``index[j]``: query-based attacks send
        many copies, and the clean unattacked modality (and the GT size) must be filled in per row."""
        s = self.space
        sizes = None if self.gt_sizes is None else [self.gt_sizes[i] for i in index.tolist()]
        return AttackSpaceModel(self.model, AttackSpace(s.rgb[index], s.depth[index], s.threat), sizes)


class TwoClassLogits(ModelView):
    """(N,1,H,W) saliency logits z -> (N,2,H,W) logits [0, z] for cross-entropy based attacks."""

    def forward(self, u: Tensor) -> Tensor:
        z = self.model(u)
        return torch.cat([torch.zeros_like(z), z], 1)


class FlatLogits(ModelView):
    """(N,1,H,W) saliency logits -> (N, H*W), for ART's ``PyTorchClassifier``."""

    def forward(self, u: Tensor) -> Tensor:
        return self.model(u).flatten(1)


class PixelBCEWithLogits(nn.Module):
    """Mean pixel BCE on flattened maps, for ART. Two ART behaviours break dense targets silently:
    for ``nn.BCEWithLogitsLoss`` it argmax-reduces (N, H*W) labels as if one-hot (so this is our own
    module), and FastGradientMethod divides labels by their sum when nb_classes > 2 (so the target is
    re-binarised here: any positive label is foreground; 0/0 = NaN compares False, i.e. background)."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, (target > 0).to(logits.dtype))


class SaliencyTask:
    name = "saliency"
    metrics = SALIENCY_METRICS
    intervals = ("S", "MAE")  # per-image means: the leaderboard gives their bootstrap interval, and ASR's
    early_stop = False  # a dense attack keeps lowering the metric after "success"; spend the budget
    score_without_patch = True  # a pasted patch may rightly become salient: also score without it

    def make_batch(self, samples: Sequence[Sample], model: nn.Module) -> Batch:
        """``samples`` at ``model``'s resolution, read by its official test loader."""
        return make_batch(samples, model.input_size, model.input_loader)

    def reads(self, model: nn.Module, dataset: Any) -> bool:
        """Whether ``model`` can be scored on ``dataset``: any RGB-D saliency dataset."""
        return dataset.task == self.name

    def prepare(self, model: nn.Module, dataset: Any) -> None:
        """Nothing to build: a saliency model's output does not depend on the dataset."""

    def bind(self, cell: Cell, dataset: Any) -> Cell:
        """Every RGB-D dataset has both modalities: the cell as it is, unless its defense is a classifier's."""
        if cell.defense is not None and getattr(DEFENSES[cell.defense["name"]], "wraps_model", False):
            raise ValueError(f"cell {cell.attack} with defense {cell.defense_label}: a classifier-level defense, "
                             f"not for a saliency model")
        return cell

    def forward(self, model: nn.Module, rgb: Tensor, depth: Tensor, batch: Batch) -> Tensor:
        """The scored logits of ``batch``'s (possibly attacked) ``rgb`` and ``depth``."""
        return model(rgb, depth, **gt_size_kwargs(model, batch.gt_sizes))

    def gallery(self, rgb: Tensor, depth: Tensor, logits: Tensor, batch: Batch, k: int) -> dict[str, np.ndarray]:
        """The first ``k`` images of a scored batch as the report shows them, in 8 bits: the (attacked)
        inputs, the predicted map and the GT at the network resolution."""
        def u8(x: Tensor) -> np.ndarray:
            return (x[:k].detach().float().clamp(0, 1) * 255).round().byte().cpu().numpy()

        return {"names": np.array(batch.names[:k]), "rgb": u8(rgb.permute(0, 2, 3, 1)), "depth": u8(depth[:, 0]),
                "pred": u8(torch.sigmoid(logits)[:, 0]), "gt": u8(batch.target[:, 0])}

    def defended(self, model: nn.Module, defense: Defense, cell: Cell) -> nn.Module:
        """``model`` behind ``defense``, itself a saliency model."""
        return DefendedModel(model, defense)

    def attack_space(self, batch: Batch, threat: ThreatModel) -> AttackSpace:
        return AttackSpace(batch.rgb, batch.depth, threat)

    def attacked_model(self, model: nn.Module, space: AttackSpace, batch: Batch | None = None) -> nn.Module:
        """The view attacks call; ``batch`` (the one ``space`` was built from) gives the GT sizes."""
        if isinstance(model, SurrogateEnsemble):
            return MeanLogits([self.attacked_model(m, space, batch) for m in model.members])
        return AttackSpaceModel(model, space, None if batch is None else batch.gt_sizes)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-sample attack objective (N,): mean pixel BCE of logits (N,1,H,W) against target (N,1,H,W)."""
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)

    def reference(self, clean_logits: Tensor) -> Tensor:
        """The target to use when no GT is given: the clean predicted map (soft, in [0,1])."""
        return torch.sigmoid(clean_logits)

    def blackbox_objective(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N,) what a black-box attack maximises from outputs alone: the pixel BCE against ``target``."""
        return self.loss(logits, target)

    def cw_objective(self, logits: Tensor, target: Tensor, kappa: float = 0.0) -> Tensor:
        """(N,) C&W-style hinge to minimise: mean_p max(m_p + kappa, 0) with the pixel margin
        m_p = (2 y_p - 1) z_p, positive where pixel p is still on the GT's side of 0."""
        margin = (2 * target - 1) * logits
        return (margin + kappa).clamp_min(0).flatten(1).mean(1)

    def success(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N,) bool: the predicted mask (z > 0) overlaps the GT by less than half (IoU < 0.5)."""
        pred, gt = logits > 0, target > 0.5
        inter = (pred & gt).flatten(1).sum(1)
        union = (pred | gt).flatten(1).sum(1).clamp_min(1)
        return inter / union < 0.5

    def object_mask(self, target: Tensor) -> Tensor | None:
        """(N,1,S,S) bool: where the salient object is, for patch placement."""
        return target > 0.5

    # torchattacks view
    def torchattacks_model(self, dense: nn.Module) -> nn.Module:
        return TwoClassLogits(dense)

    def torchattacks_labels(self, target: Tensor) -> Tensor:
        return target[:, 0].round().long()

    # ART view
    def art_model(self, dense: nn.Module) -> nn.Module:
        return FlatLogits(dense)

    def art_loss(self) -> nn.Module:
        return PixelBCEWithLogits()

    def art_labels(self, target: Tensor, nb_classes: int) -> np.ndarray:
        return target.flatten(1).cpu().numpy().astype(np.float32)

    # scoring
    def summarise(self, records: list[dict], curves: dict[str, np.ndarray]) -> dict[str, float]:
        return sod.summarise(records, curves["f"], curves["e"])

    def successes(self, records: list[dict], clean: list[dict]) -> list[bool]:
        """Per image whose clean map overlaps the GT by at least half (IoU >= 0.5, in the clean cell behind
        the same defense): whether the attack takes it below half. Their mean is ASR. Records scored
        before IoU was recorded do not count."""
        correct = {r["image"] for r in clean if r.get("IoU", np.nan) >= 0.5}
        return [r["IoU"] < 0.5 for r in records if r["image"] in correct and "IoU" in r]

    def score(self, model: nn.Module, logits: Tensor, batch: Batch,
              exclude: Tensor | None = None) -> list[tuple[dict[str, float], dict[str, np.ndarray]]]:
        """Official post-processing to each GT's size, then PySODMetrics; one entry per image: its
        scalars and its F and E curves ("f", "e").

        ``exclude`` (N,1,S,S) bool, a patch mask: the patch region is removed from the prediction and the
        GT alike and the rest of the scene is scored (:mod:`benchmark.metrics.masked`, no wF). A GT pixel
        counts as patch wherever the bilinearly resized mask reaches it, so no patch pixel leaks into
        the scored ones."""
        out = []
        metric = sod.SODMetrics() if exclude is None else MaskedSODMetrics()
        for i, gt in enumerate(batch.gts):
            prob = model.postprocess(logits[i : i + 1].float(), gt.shape[:2])[0, 0].detach().cpu().numpy()
            pred = sod.to_uint8(prob)
            if exclude is None:
                scalars, f, e = metric.step(pred, gt)
            else:
                patch = F.interpolate(exclude[i : i + 1].float(), size=gt.shape[:2], mode="bilinear",
                                      align_corners=False)[0, 0].cpu().numpy() > 0
                scalars, f, e = metric.step(pred, gt, ~patch)
            out.append(({**scalars, "IoU": sod.mask_iou(pred, gt)}, {"f": f, "e": e}))
        return out
