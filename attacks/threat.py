"""Threat model of one benchmark cell and the attack space it induces on an RGB-D input.

An attack sees one tensor ``u`` (the *attack space*): the RGB channels, the depth channel, or both
stacked, depending on the modality. RGB and depth may have different budgets, so each channel ``c``
is mapped affinely about mid-grey,

    u_c = 0.5 + (x_c - 0.5) * E / eps_c,   E = min(eps_c over attacked channels),

which turns the per-modality balls ``|delta_c| <= eps_c`` into one ball ``|delta_u| <= E`` that any
library attack can project onto. A modality with a zero budget (``modality: rgbd, eps_depth: 0``) is not
part of the attack space: it stays exactly clean while the other is attacked (``space_modality``), so
E > 0 whenever any attacked budget is. Because ``eps_c >= E`` every valid ``x_c in [0,1]`` lies inside
``u_c in [0,1]``; the wrapper clamps ``x`` back to [0,1], so the library's clipping never leaves the
budget. For L2 the budget is the joint norm ``||(delta_rgb * E/eps_rgb, delta_depth * E/eps_depth)||_2 <= E``.

Three budgets are not pixel-value balls, and their attack space is the identity (u = x):
``l0`` (eps = the fraction of pixel positions an attack may change, any channel of the attacked
modality counting once), ``patch`` (eps = the patch area as a fraction of the image; the pixels
inside the patch may take any value in [0,1], none outside may change) and ``latent``, the
*unrestricted* budget of natural adversarial examples (eps = the L2 distance in a generator's latent
space from the input's inversion; the pixels may change anywhere, by any amount: such rows report the
latent and the pixel distances they used, and are never read as Lp-bounded). A black-box attack's query
budget per image, ``queries``, is part of the threat model too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

Modality = Literal["rgb", "depth", "rgbd"]
Norm = Literal["linf", "l2", "l0", "patch", "latent"]
NORMS: tuple[Norm, ...] = ("linf", "l2", "l0", "patch", "latent")
MODALITIES: tuple[Modality, ...] = ("rgb", "depth", "rgbd")


@dataclass(frozen=True)
class ThreatModel:
    """Budget of one cell. ``eps``/``eps_depth`` are in [0,1] pixel units at network resolution."""

    norm: Norm = "linf"
    eps: float = 8 / 255
    eps_depth: float | None = None  # defaults to ``eps``
    modality: Modality = "rgbd"
    steps: int = 10
    rel_step: float = 0.25  # step size as a fraction of the attack-space budget E
    queries: int | None = None  # black-box attacks: model queries allowed per image

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; use one of {NORMS}")
        if self.norm in ("l0", "patch") and (self.eps_depth is not None or not 0 <= self.eps <= 1):
            raise ValueError(f"{self.norm} budget: eps is a fraction in [0,1] of the image; eps_depth does not apply")
        if self.norm == "latent" and self.eps_depth is not None:
            raise ValueError("latent budget: eps is a distance in the generator's latent space; eps_depth does not apply")
        if self.queries is not None and self.queries < 1:
            raise ValueError("queries must be >= 1")
        if self.modality not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; use one of {MODALITIES}")
        if self.eps < 0 or (self.eps_depth is not None and self.eps_depth < 0):
            raise ValueError("eps must be >= 0")

    @property
    def pixel_norm(self) -> bool:
        """True for the pixel-value balls (linf, l2), whose attack space is rescaled per modality."""
        return self.norm in ("linf", "l2")

    @property
    def depth_eps(self) -> float:
        return self.eps if self.eps_depth is None else self.eps_depth

    @property
    def space_modality(self) -> Modality:
        """The modalities the attack space holds: the attacked ones with a non-zero pixel budget (all
        attacked ones when every budget is zero, e.g. the clean cell)."""
        if self.modality != "rgbd" or not self.pixel_norm or (self.eps > 0) == (self.depth_eps > 0):
            return self.modality
        return "rgb" if self.eps > 0 else "depth"

    def budget(self, modality: str) -> float:
        """The pixel budget of ``modality`` ("rgb" or "depth"): 0 where it is not attacked."""
        if self.modality not in (modality, "rgbd"):
            return 0.0
        return self.eps if modality == "rgb" else self.depth_eps

    @property
    def channel_eps(self) -> tuple[float, ...]:
        """Budget of each channel of the attack space, in attack-space channel order."""
        rgb, d = (self.eps,) * 3, (self.depth_eps,)
        return {"rgb": rgb, "depth": d, "rgbd": rgb + d}[self.space_modality]

    @property
    def space_eps(self) -> float:
        """E: the single budget of the attack space."""
        return min(self.channel_eps)

    @property
    def step_size(self) -> float:
        return self.rel_step * self.space_eps

    def to_dict(self) -> dict:
        d = {**asdict(self), "eps_depth": self.depth_eps}
        if self.queries is None:  # keeps the ids of cells without a query budget unchanged
            del d["queries"]
        return d


class AttackSpace:
    """Maps a clean RGB-D batch to the attack space ``u`` and an attacked ``u`` back to (rgb, depth).
    A model that takes one modality only (a classifier's query) has None for the other, which then
    cannot be attacked."""

    def __init__(self, rgb: Tensor | None, depth: Tensor | None, threat: ThreatModel):
        wanted = {"rgb": ("rgb",), "depth": ("depth",), "rgbd": ("rgb", "depth")}[threat.space_modality]
        missing = [m for m, x in (("rgb", rgb), ("depth", depth)) if x is None and m in wanted]
        if missing:
            raise ValueError(f"modality {threat.modality!r}: the model takes no {missing[0]} input")
        self.rgb, self.depth, self.threat = rgb, depth, threat
        eps = threat.channel_eps
        e = threat.space_eps
        # scale_c = E / eps_c (1 when every budget is zero, E = 0, and for l0/patch)
        scale = [e / c if c > 0 and threat.pixel_norm else 1.0 for c in eps]
        like = rgb if rgb is not None else depth
        self.scale = torch.tensor(scale, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        self.identity = all(c == 1.0 for c in scale)  # equal budgets: u = x exactly, no rounding

    def _stack(self, rgb: Tensor | None, depth: Tensor | None) -> Tensor:
        m = self.threat.space_modality
        return rgb if m == "rgb" else depth if m == "depth" else torch.cat([rgb, depth], 1)

    def initial(self) -> Tensor:
        """The clean batch in attack space."""
        x = self._stack(self.rgb, self.depth)
        return x.clone() if self.identity else 0.5 + (x - 0.5) * self.scale

    def compose(self, u: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(rgb, depth) in [0,1] from an attack-space tensor; unattacked modalities stay clean."""
        x = (u if self.identity else 0.5 + (u - 0.5) / self.scale).clamp(0, 1)
        m = self.threat.space_modality
        if m == "rgb":
            return x, self.depth
        if m == "depth":
            return self.rgb, x
        return x[:, :3], x[:, 3:]
