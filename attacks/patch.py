"""Adversarial patch (Brown et al. 2017, "Adversarial Patch", arXiv:1712.09665), per image and universal.

Threat model (norm ``patch``): eps is the patch area as a fraction of the S x S image. The patch is a
square of side s = floor(sqrt(eps * S^2)) px over the attacked channels of the identity attack space
``u`` (RGB: a printed sticker, depth unchanged; depth; RGB-D: an RGB patch with its own depth patch),
so its area s^2 <= eps * S^2. Pasting replaces those channels inside the square,

    A(p, u, l)_{c,y,x} = p_{c, y - l_y, x - l_x}  inside the square at top-left l,  u_{c,y,x} elsewhere.

Training maximises, over the patch p in [0,1]^{C x s x s}, the expectation over transformations
(EOT, Athalye et al. 2018, arXiv:1707.07397) of the task loss minus a total-variation penalty (Sharif
et al. 2016, "Accessorize to a Crime"),

    max_p  E_{t ~ T} [ L(f(A(t(p), u, l_t)), y) ] - lambda_TV * TV(p),
    TV(p) = mean_{c,i,j} sqrt((p_{c,i+1,j} - p_{c,i,j})^2 + (p_{c,i,j+1} - p_{c,i,j})^2 + 1e-8),

where t draws a scale (0.8-1.2), a rotation (+-20 deg), a contrast and brightness change and additive
Gaussian pixel noise, and a location l_t; the transformed patch is rendered by a differentiable
affine warp (``affine_grid``/``grid_sample``) and alpha-composited over u. The expectation is
estimated with ``eot_samples`` draws per step; the optimiser is Adam or signed-gradient ascent.

Evaluation pastes the patch untransformed (nominal scale, axis-aligned) at a placement that is a
function of the image name alone (a generator seeded by sha256(name)): ``object`` centres it on a
pixel of the task's object mask (random when the task has none or it is empty), ``random`` draws a
top-left corner uniformly, ``fixed`` centres it at ``at`` = (row, col) fractions of the image. The
patch always lies fully inside the image. Random draws (initial patch, EOT) come from torch's RNG.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AttackOutput, check_norm
from .threat import ThreatModel

PLACEMENTS = ("object", "random", "fixed")
View = tuple[nn.Module, Tensor, Tensor, list[str]]


def patch_side(threat: ThreatModel, size: int) -> int:
    """s = floor(sqrt(eps * S^2)) in exact integer arithmetic, so s^2 <= eps * S^2 as the budget check computes it."""
    side = math.isqrt(int(threat.eps * (size * size)))
    if side < 1:
        raise ValueError(f"patch area eps={threat.eps} is less than one pixel of a {size}x{size} image")
    return side


def name_generator(name: str) -> torch.Generator:
    """A CPU generator seeded from the image name: the same image always gets the same placement."""
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))


def placements(size: int, side: int, placement: str, objects: Tensor | None,
               at: tuple[float, float], gens: list[torch.Generator | None]) -> Tensor:
    """(N,2) long top-left (row, col) of a side x side patch in an S x S image, one per generator
    (``None``: torch's global RNG). ``objects``: (N,1,S,S) bool object mask or None."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; use one of {PLACEMENTS}")
    top_max = size - side
    tops = []
    for i, g in enumerate(gens):
        if placement == "fixed":
            tops.append([min(max(round(a * size - side / 2), 0), top_max) for a in at])
            continue
        cand = objects[i, 0].nonzero().cpu() if placement == "object" and objects is not None else torch.empty(0, 2)
        fits = cand[((cand - side // 2 >= 0) & (cand - side // 2 <= top_max)).all(1)]
        cand = fits if len(fits) else cand  # an object only near the border: centre on it as far as it fits
        if len(cand):
            centre = cand[torch.randint(len(cand), (1,), generator=g).item()]
            tops.append((centre - side // 2).clamp(0, top_max).tolist())
        else:
            tops.append(torch.randint(top_max + 1, (2,), generator=g).tolist())
    return torch.tensor(tops, dtype=torch.long)


def paste(u0: Tensor, patch: Tensor, tops: Tensor) -> tuple[Tensor, Tensor]:
    """Paste ``patch`` ((N,C,s,s), or (C,s,s) for all) at ``tops``: the patched batch and its (N,1,S,S) bool mask."""
    side = patch.shape[-1]
    patch = patch.expand(len(u0), *patch.shape[-3:]).to(u0)
    u, mask = u0.clone(), torch.zeros_like(u0[:, :1], dtype=torch.bool)
    for i, (r, c) in enumerate(tops.tolist()):
        u[i, :, r:r + side, c:c + side] = patch[i]
        mask[i, :, r:r + side, c:c + side] = True
    return u, mask


def total_variation(p: Tensor) -> Tensor:
    """(B,) mean isotropic TV of (B,C,s,s) patches (Sharif et al. 2016), smoothed at 0 for a finite gradient."""
    dy = p[..., 1:, :-1] - p[..., :-1, :-1]
    dx = p[..., :-1, 1:] - p[..., :-1, :-1]
    return (dy**2 + dx**2 + 1e-8).sqrt().flatten(1).mean(1)


@dataclass(frozen=True)
class EOT:
    """The transformation distribution T: ``eot_samples`` draws per step of a scale factor in ``scale``,
    a rotation in +-``rotation`` deg, a contrast factor in 1 +- ``contrast``, a brightness shift in
    +-``brightness``, Gaussian pixel noise of std ``noise`` and a location jitter of +-``jitter`` x side px."""

    eot_samples: int = 4
    scale: tuple[float, float] = (0.8, 1.2)
    rotation: float = 20.0
    brightness: float = 0.1
    contrast: float = 0.1
    noise: float = 0.02
    jitter: float = 0.25

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "EOT":
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    def jittered(self, centres: Tensor, side: int) -> Tensor:
        return centres + (torch.rand_like(centres) * 2 - 1) * self.jitter * side


def _uniform(n: int, lo: float, hi: float, like: Tensor) -> Tensor:
    return torch.rand(n, device=like.device, dtype=like.dtype) * (hi - lo) + lo


def render(u: Tensor, patch: Tensor, centres: Tensor, eot: EOT) -> Tensor:
    """One EOT draw per image: ``patch`` (N,C,s,s) photometrically jittered, scaled by sigma, rotated by
    theta about its centre ``centres`` (N,2) (continuous (row, col) px) and composited over ``u``.

    With X the output pixel in normalised coords (align_corners=False), the patch is sampled at
    (S / (sigma s)) R(theta) X + R(theta) (S - 2C) / (sigma s); at sigma = 1, theta = 0 and an integer
    corner this samples exactly the patch pixels, i.e. it is :func:`paste`.
    """
    b, _, side, _ = patch.shape
    size = u.shape[-1]
    c = _uniform(b, 1 - eot.contrast, 1 + eot.contrast, patch).view(-1, 1, 1, 1)
    shift = _uniform(b, -eot.brightness, eot.brightness, patch).view(-1, 1, 1, 1)
    p = (c * (patch - 0.5) + 0.5 + shift + eot.noise * torch.randn_like(patch)).clamp(0, 1)
    sigma = _uniform(b, *eot.scale, patch)
    theta = _uniform(b, -eot.rotation, eot.rotation, patch) * math.pi / 180
    cos, sin = theta.cos(), theta.sin()
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (N,2,2) on (x, y)
    k = (size / (sigma * side)).view(-1, 1, 1)
    offset = (size - 2 * centres.flip(1).to(u)).unsqueeze(-1)  # (x, y) order
    affine = torch.cat([k * rot, rot @ offset / (sigma * side).view(-1, 1, 1)], 2)
    grid = F.affine_grid(affine, [b, 1, size, size], align_corners=False)
    content = F.grid_sample(p, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = F.grid_sample(torch.ones_like(p[:, :1]), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return u * (1 - alpha) + content  # content is premultiplied by alpha (zero padding)


class _PatchOptimiser:
    """Ascends E_t[L] - lambda_TV TV(p) on patches kept in [0,1]: Adam (on the negated objective) or
    signed-gradient steps. The expectation's gradient is the mean of ``eot_samples`` per-draw
    gradients, each draw one forward pass of the batch (``dense`` takes batches of its own N only)."""

    def __init__(self, patch: Tensor, optimizer: str, lr: float, tv_weight: float):
        if optimizer not in ("adam", "sign"):
            raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'sign'")
        self.patch, self.lr, self.tv_weight = patch.requires_grad_(True), lr, tv_weight
        self.adam = torch.optim.Adam([patch], lr=lr) if optimizer == "adam" else None

    def step(self, draw: Callable[[Tensor], Tensor], samples: int) -> None:
        """``draw(patch)``: the loss of one EOT draw, summed over independent patches."""
        tv = total_variation(self.patch.view(-1, *self.patch.shape[-3:])).sum()
        (grad,) = torch.autograd.grad(-self.tv_weight * tv, self.patch)
        for _ in range(samples):
            grad += torch.autograd.grad(draw(self.patch), self.patch)[0] / samples
        with torch.no_grad():
            if self.adam is None:
                self.patch += self.lr * grad.sign()
            else:
                self.patch.grad = -grad
                self.adam.step()
            self.patch.clamp_(0, 1)


class PatchAttack:
    """Per-image adversarial patch: one patch per image, optimised with EOT around the image's placement.

    Params: ``placement`` ('object' | 'random' | 'fixed'), ``at`` (row, col) fractions for 'fixed',
    ``optimizer`` ('adam' | 'sign'), ``lr``, ``tv_weight`` and the :class:`EOT` fields. Steps: ``threat.steps``.
    """

    backend = "ours"
    norms = ("patch",)

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 names: list[str], placement: str = "object", at: tuple[float, float] = (0.5, 0.5),
                 optimizer: str = "adam", lr: float = 0.1, tv_weight: float = 0.0, **params: Any) -> AttackOutput:
        check_norm("patch", self.norms, threat)
        eot = EOT.from_params(params)
        n, ch, size = len(u0), u0.shape[1], u0.shape[-1]
        side = patch_side(threat, size)
        tops = placements(size, side, placement, task.object_mask(target), at, [name_generator(x) for x in names])
        nominal, u0 = tops.to(u0) + side / 2, u0.detach()

        def draw(patch: Tensor) -> Tensor:
            x = render(u0, patch, eot.jittered(nominal, side), eot)
            return task.loss(dense(x), target).sum()

        opt = _PatchOptimiser(torch.rand(n, ch, side, side, device=u0.device, dtype=u0.dtype), optimizer, lr, tv_weight)
        for _ in range(threat.steps):
            opt.step(draw, eot.eot_samples)
        u, mask = paste(u0, opt.patch.detach(), tops)
        return patch_output(u, mask, side, size)


class UniversalPatch:
    """Universal adversarial patch: one patch for a whole dataset (Brown et al. 2017).

    ``fit(views, threat, task, **params)``: ``views`` is a zero-argument callable returning a fresh
    iterator over ``(dense, u0, target, names)`` batches; it is called once per epoch (``epochs``,
    default ``threat.steps``) and each batch is one optimiser step of the mean loss over its images,
    with ``eot_samples`` draws each at a freshly drawn placement (torch's RNG, not the images' names)
    and the transformations of :class:`PatchAttack`. ``__call__(..., names, universal)`` only pastes
    the fitted (C,s,s) patch at each image's placement.
    """

    backend = "ours"
    norms = ("patch",)
    universal_kind = "patch"

    def fit(self, views: Callable[[], Iterable[View]], threat: ThreatModel, task: Any, *,
            epochs: int | None = None, placement: str = "object", at: tuple[float, float] = (0.5, 0.5),
            optimizer: str = "adam", lr: float = 0.1, tv_weight: float = 0.0, **params: Any) -> Tensor:
        check_norm("upatch", self.norms, threat)
        eot = EOT.from_params(params)
        opt: _PatchOptimiser | None = None
        for _ in range(threat.steps if epochs is None else epochs):
            for dense, u0, target, _names in views():
                n, ch, size = len(u0), u0.shape[1], u0.shape[-1]
                if opt is None:
                    side = patch_side(threat, size)
                    opt = _PatchOptimiser(torch.rand(ch, side, side, device=u0.device, dtype=u0.dtype),
                                          optimizer, lr, tv_weight)
                objects, u0 = task.object_mask(target), u0.detach()

                def draw(patch: Tensor) -> Tensor:
                    tops = placements(size, side, placement, objects, at, [None] * n).to(u0)
                    x = render(u0, patch.expand(n, -1, -1, -1), eot.jittered(tops + side / 2, side), eot)
                    return task.loss(dense(x), target).mean()

                opt.step(draw, eot.eot_samples)
        if opt is None:
            raise ValueError("universal patch: views() yielded no batches to fit on")
        return opt.patch.detach()

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 names: list[str], universal: Tensor, placement: str = "object",
                 at: tuple[float, float] = (0.5, 0.5), **params: Any) -> AttackOutput:
        check_norm("upatch", self.norms, threat)
        size = u0.shape[-1]
        side = patch_side(threat, size)
        if tuple(universal.shape) != (u0.shape[1], side, side):
            raise ValueError(f"universal patch of shape {tuple(universal.shape)} does not fit this cell: "
                             f"expected {(u0.shape[1], side, side)} (channels, side) for eps={threat.eps} at {size}px")
        tops = placements(size, side, placement, task.object_mask(target), at, [name_generator(x) for x in names])
        u, mask = paste(u0, universal, tops)
        return patch_output(u, mask, side, size)


def patch_output(u: Tensor, mask: Tensor, side: int, size: int) -> AttackOutput:
    """The attack's result with its true mask and per-image ``patch_side`` (px) and ``patch_area`` (fraction)."""
    n = len(u)
    info = {"patch_side": torch.full((n,), float(side)), "patch_area": mask.flatten(1).sum(1).float().cpu() / size**2}
    return AttackOutput(u.detach(), info, mask)
