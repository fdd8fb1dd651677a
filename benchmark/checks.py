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


def _present(rgb0: Tensor | None, depth0: Tensor | None, rgb: Tensor | None, depth: Tensor | None
             ) -> dict[str, tuple[Tensor, Tensor]]:
    """The modalities the model takes (a classifier's query may be RGB or depth alone): name -> (clean, adversarial)."""
    pairs = {"rgb": (rgb0, rgb), "depth": (depth0, depth)}
    return {m: (a, b) for m, (a, b) in pairs.items() if a is not None and b is not None}


def changed_pixels(rgb0: Tensor | None, depth0: Tensor | None, rgb: Tensor | None, depth: Tensor | None) -> Tensor:
    """(N,1,H,W) bool: pixel positions where any RGB or depth channel moved by more than TOLERANCE."""
    moved = torch.cat([(b - a).abs() for a, b in _present(rgb0, depth0, rgb, depth).values()], 1)
    return moved.amax(1, keepdim=True) > TOLERANCE


def perturbation_norms(rgb0: Tensor | None, depth0: Tensor | None, rgb: Tensor | None, depth: Tensor | None,
                       changed: Tensor) -> dict[str, Tensor]:
    """Per-image L-inf and L2 norms of the perturbation of each modality the model takes, and the L0
    fraction of pixel positions ``changed`` (from :func:`changed_pixels`)."""
    norms = {}
    for m, (a, b) in _present(rgb0, depth0, rgb, depth).items():
        d = (b - a).flatten(1)
        norms.update({f"linf_{m}": d.abs().amax(1), f"l2_{m}": d.norm(dim=1)})
    return {**norms, "l0": changed.flatten(1).float().mean(1)}


def _region_excess(changed: Tensor, threat: ThreatModel, mask: Tensor | None) -> Tensor:
    """Excess over an l0 or patch budget, in pixels (> 0 is a violation)."""
    area = changed[0].numel()
    if threat.norm == "l0":
        return changed.flatten(1).sum(1) - threat.eps * area
    if mask is None:
        raise BudgetViolation("a patch attack must return the mask of its patch pixels")
    outside = (changed & ~mask).flatten(1).sum(1).float()
    return torch.maximum(outside, mask.flatten(1).sum(1) - threat.eps * area)


def _excess(n: dict[str, Tensor], changed: Tensor, threat: ThreatModel, mask: Tensor | None,
            scored: list[str], latent: Tensor | None) -> Tensor:
    """Per image, how far the perturbation of the ``scored`` modalities exceeds the budget (> 0 is a
    violation): L-inf per modality, the joint rescaled L2 ball, the l0 / patch region, or the latent
    distance the attack reports."""
    if not scored:
        return torch.zeros(changed.shape[0], device=changed.device)
    if threat.norm == "latent":
        if latent is None:
            raise BudgetViolation("an unrestricted (latent) attack must report its latent distance per image")
        return latent.to(changed.device) - threat.eps * (1 + L2_RELATIVE_TOLERANCE)
    if threat.norm == "linf":
        return torch.stack([n[f"linf_{m}"] - threat.budget(m) for m in scored]).amax(0)
    if not threat.pixel_norm:
        return _region_excess(changed, threat, mask)
    e = threat.space_eps
    weighted = sum((n[f"l2_{m}"] * (e / threat.budget(m))) ** 2 for m in scored)
    return torch.sqrt(weighted) - e * (1 + L2_RELATIVE_TOLERANCE)


def check_budget(names: list[str], rgb0: Tensor | None, depth0: Tensor | None, rgb: Tensor | None,
                 depth: Tensor | None, threat: ThreatModel, mask: Tensor | None = None,
                 latent: Tensor | None = None) -> dict[str, Tensor]:
    """Raise :class:`BudgetViolation` naming the image if any perturbation leaves the threat model.
    A modality the model does not take is None. ``mask`` (N,1,H,W) bool: a patch attack's patch pixels,
    the only ones it may change; ``latent`` (N,): an unrestricted attack's latent distance per image,
    which its budget bounds. Non-finite inputs are a violation; a modality with a zero budget (not
    attacked, or ``eps_depth: 0``) must be exactly unchanged, bit for bit."""
    present = _present(rgb0, depth0, rgb, depth)
    for m, (_, b) in present.items():
        bad = (~torch.isfinite(b)).flatten(1).any(1).nonzero().flatten().tolist()
        if bad:
            raise BudgetViolation(f"image {names[bad[0]]}: the adversarial {m} input has non-finite values")
    changed = changed_pixels(rgb0, depth0, rgb, depth)
    n = perturbation_norms(rgb0, depth0, rgb, depth, changed)
    lo = min(b.min().item() for _, b in present.values())
    hi = max(b.max().item() for _, b in present.values())
    if lo < 0 or hi > 1:
        raise BudgetViolation(f"adversarial input leaves [0,1]: range [{lo:.6g}, {hi:.6g}]")
    # not attacked, or attacked with a zero pixel budget: nothing may change
    frozen = [m for m in present if threat.modality not in (m, "rgbd") or threat.pixel_norm and threat.budget(m) == 0]
    for m in frozen:
        a, b = present[m]
        bad = (a != b).flatten(1).any(1).nonzero().flatten().tolist()
        if bad:
            i = bad[0]
            raise BudgetViolation(f"image {names[i]}: {m} has a zero budget but changed by up to "
                                  f"{n[f'linf_{m}'][i].item():.3g} (threat {threat.to_dict()})")
    excess = _excess(n, changed, threat, mask, [m for m in present if m not in frozen], latent)
    bad = (excess > TOLERANCE).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        found = "; ".join(f"{k} {v[i].item():.6g}" for k, v in n.items() if k != "l0")
        raise BudgetViolation(f"image {names[i]}: perturbation exceeds the {threat.norm} budget by "
                              f"{excess[i].item():.3g} (threat {threat.to_dict()}; {found})")
    return n
