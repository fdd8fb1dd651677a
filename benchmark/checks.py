"""Invariants checked on every adversarial batch: the budget holds and the model is unchanged."""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from attacks.threat import ThreatModel

TOLERANCE = 1e-6  # float32 rounding of the attack-space map, in [0,1] pixel units
L2_RELATIVE_TOLERANCE = 1e-5  # float32 norms over ~1e5 pixels: libraries' projections land within this


class BudgetViolation(RuntimeError):
    """An attack returned an input outside its threat model."""


class ModelTampered(RuntimeError):
    """An attack changed the model's parameters or buffers."""


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes and bytes) and every module's
    train/eval mode: a mode flip would let BatchNorm statistics drift on the next forward pass."""
    h = hashlib.sha256()
    h.update(str([m.training for m in model.modules()]).encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def changed_pixels(rgb0: Tensor, depth0: Tensor, rgb: Tensor, depth: Tensor) -> Tensor:
    """(N,1,H,W) bool: pixel positions where any RGB or depth channel moved by more than TOLERANCE."""
    moved = torch.cat([(rgb - rgb0).abs(), (depth - depth0).abs()], 1)
    return moved.amax(1, keepdim=True) > TOLERANCE


def perturbation_norms(rgb0: Tensor, depth0: Tensor, rgb: Tensor, depth: Tensor, changed: Tensor) -> dict[str, Tensor]:
    """Per-image L-inf and L2 norms of the RGB and depth perturbations, and the L0 fraction of
    pixel positions ``changed`` (from :func:`changed_pixels`)."""
    dr, dd = (rgb - rgb0).flatten(1), (depth - depth0).flatten(1)
    return {"linf_rgb": dr.abs().amax(1), "linf_depth": dd.abs().amax(1),
            "l2_rgb": dr.norm(dim=1), "l2_depth": dd.norm(dim=1),
            "l0": changed.flatten(1).float().mean(1)}


def _region_excess(changed: Tensor, threat: ThreatModel, mask: Tensor | None) -> Tensor:
    """Excess over an l0 or patch budget, in pixels (> 0 is a violation)."""
    area = changed[0].numel()
    if threat.norm == "l0":
        return changed.flatten(1).sum(1) - threat.eps * area
    if mask is None:
        raise BudgetViolation("a patch attack must return the mask of its patch pixels")
    outside = (changed & ~mask).flatten(1).sum(1).float()
    return torch.maximum(outside, mask.flatten(1).sum(1) - threat.eps * area)


def check_budget(names: list[str], rgb0: Tensor, depth0: Tensor, rgb: Tensor, depth: Tensor,
                 threat: ThreatModel, mask: Tensor | None = None) -> dict[str, Tensor]:
    """Raise :class:`BudgetViolation` naming the image if any perturbation leaves the threat model.
    ``mask`` (N,1,H,W) bool: a patch attack's patch pixels, the only ones it may change."""
    changed = changed_pixels(rgb0, depth0, rgb, depth)
    n = perturbation_norms(rgb0, depth0, rgb, depth, changed)
    lo, hi = min(rgb.min().item(), depth.min().item()), max(rgb.max().item(), depth.max().item())
    if lo < 0 or hi > 1:
        raise BudgetViolation(f"adversarial input leaves [0,1]: range [{lo:.6g}, {hi:.6g}]")
    eps_rgb = threat.eps if threat.modality in ("rgb", "rgbd") else 0.0
    eps_d = threat.depth_eps if threat.modality in ("depth", "rgbd") else 0.0
    if threat.norm == "linf":
        excess = torch.maximum(n["linf_rgb"] - eps_rgb, n["linf_depth"] - eps_d)
    elif not threat.pixel_norm:
        excess = _region_excess(changed, threat, mask)
    else:
        e = threat.space_eps
        w_rgb = e / eps_rgb if eps_rgb > 0 else 0.0
        w_d = e / eps_d if eps_d > 0 else 0.0
        excess = torch.sqrt((n["l2_rgb"] * w_rgb) ** 2 + (n["l2_depth"] * w_d) ** 2) - e * (1 + L2_RELATIVE_TOLERANCE)
    # A modality outside the threat model must stay untouched.
    if threat.modality == "depth":
        excess = torch.maximum(excess, n["linf_rgb"])
    if threat.modality == "rgb":
        excess = torch.maximum(excess, n["linf_depth"])
    bad = (excess > TOLERANCE).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        raise BudgetViolation(
            f"image {names[i]}: perturbation exceeds the {threat.norm} budget by {excess[i].item():.3g} "
            f"(threat {threat.to_dict()}; linf rgb {n['linf_rgb'][i].item():.6g}, depth "
            f"{n['linf_depth'][i].item():.6g}; l2 rgb {n['l2_rgb'][i].item():.6g}, depth {n['l2_depth'][i].item():.6g})")
    return n
