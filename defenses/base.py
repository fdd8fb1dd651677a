"""The contract every defense in the registry follows.

    d = build_defense("jpeg", quality=75, modality="rgb")
    out = d(rgb, depth)       # rgb (N,3,H,W), depth (N,1,H,W) in [0,1]; either may be None
    out.rgb, out.depth        # purified inputs: same shapes, dtype, device, in [0,1]; the modality the
                              # defense is not configured for is passed through untouched
    out.mask                  # (N,1,H,W) in [0,1] where the defense thinks a patch is, or None
    out.restore(logits)       # a spatial defense maps a dense prediction back to the input's geometry
    d.differentiable          # autograd through d is exact; else the backward pass is d.bpda's
    d.randomized              # two calls on one input may differ; adaptive attacks average (EOT)

The shape follows ART's ``Preprocessor`` (a forward and a gradient estimate for BPDA), in torch. A
defense that is not differentiable (JPEG, quantisation, total-variation minimisation) runs its exact
transform forward and the gradient of ``bpda`` backward (Athalye et al., ICML 2018, "Obfuscated
Gradients Give a False Sense of Security", BPDA): y = g(x) + (f(x) - g(x)).detach(), so y = f(x) and
dy/dx = dg/dx, with g the identity unless the defense supplies a better approximation.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from models.base import straight_through

DEFENSE_MODALITIES = ("rgb", "depth", "rgbd")


@dataclass
class DefenseOutput:
    rgb: Tensor | None
    depth: Tensor | None
    mask: Tensor | None = None
    restore: Callable[[Tensor], Tensor] | None = None  # output geometry back to the input's (None: as is)


class Defense(nn.Module):
    """Base of the input defenses: subclasses implement ``purify`` on one modality's (N,C,H,W) batch in
    [0,1]; the base applies it to the configured modalities and handles BPDA."""

    differentiable: ClassVar[bool] = True
    randomized: ClassVar[bool] = False
    modalities: ClassVar[tuple[str, ...]] = DEFENSE_MODALITIES  # the modalities it may be configured for
    needs_rgbd: ClassVar[bool] = False  # it reads both modalities whatever it acts on (not for one-image models)

    def __init__(self, modality: str = "rgb"):
        super().__init__()
        if modality not in self.modalities:
            raise ValueError(f"{type(self).__name__} acts on {list(self.modalities)}, not {modality!r}")
        self.modality = modality

    def purify(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def bpda(self, x: Tensor) -> Tensor:
        """The differentiable approximation used in the backward pass (identity: the standard BPDA)."""
        return x

    def acts_on(self, modality: str) -> bool:
        return self.modality in (modality, "rgbd")

    def _defend(self, x: Tensor, masks: list[Tensor]) -> Tensor:
        """One modality purified, through BPDA where that is not differentiable (a patch defense also
        appends where it located the patch to ``masks``)."""
        if self.differentiable:
            return self.purify(x)
        with torch.no_grad():
            y = self.purify(x.detach())
        return straight_through(y, self.bpda(x))

    def forward(self, rgb: Tensor | None, depth: Tensor | None) -> DefenseOutput:
        masks: list[Tensor] = []
        if self.acts_on("rgb") and rgb is not None:
            rgb = self._defend(rgb, masks)
        if self.acts_on("depth") and depth is not None:
            depth = self._defend(depth, masks)
        return DefenseOutput(rgb, depth, torch.stack(masks).amax(0) if masks else None)

    def config(self) -> dict[str, Any]:
        """Every constructor argument with its value (defaults included): what a leaderboard row names."""
        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}


class PatchDefense(Defense):
    """Base of the patch defenses that work on one modality at a time: ``locate`` finds the patch, ``fill``
    removes it (through BPDA where that is not differentiable); ``out.mask`` is the union of the masks of
    the modalities it acts on."""

    def locate(self, x: Tensor) -> Tensor:
        """(N,C,H,W) -> the (N,1,H,W) patch mask in [0,1]."""
        raise NotImplementedError

    def fill(self, x: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def purify(self, x: Tensor) -> Tensor:
        return self.fill(x, self.locate(x))

    def _defend(self, x: Tensor, masks: list[Tensor]) -> Tensor:
        masks.append(self.locate(x))
        y = self.fill(x, masks[-1])
        return y if self.differentiable else straight_through(y, self.bpda(x))
