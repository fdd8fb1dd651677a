"""Natural adversarial examples (Zhao, Dua, Singh, ICLR 2018, "Generating Natural Adversarial Examples"):
instead of a small pixel perturbation, search the latent space of a generator G (z -> x) near the
inversion z* = I(x) of the input for a z' whose image G(z') fools the model:

    z' = argmin_z ||z - I(x)||_2   s.t.   G(z) fools f,

and the adversarial input is G(z'). There is no Lp ball: the budget is the latent distance (the
``latent`` norm of the threat model, eps = max ||z' - I(x)||_2), and each image records the latent
distance used and the pixel L2 / L-inf distances from x that it came to (``latent_distance``,
``pixel_l2``, ``pixel_linf``). "Fools" is the task's success test against the target of x: for
saliency, the predicted map overlaps the GT of x by less than half (IoU < 0.5); for classification, the
true label of x is no longer top-1. An image the search cannot fool within the budget keeps its clean
input (latent distance 0), so a row's score is the robust score at that latent budget.

Searches (``search``):
- ``stochastic`` (the paper's iterative stochastic search): sample ``samples`` points in shells of
  growing radius around z*, (r - dr, r] with dr = eps / ``shells``, and stop at the first shell where
  some sample fools; keep the fooling sample nearest to z*.
- ``gradient``: ``steps`` Adam steps on z = z* + d minimising the task's C&W objective of f(G(z)), d
  projected onto the latent ball; keep the fooling iterate nearest to z*.

G and I are ours (:class:`LatentGenerator`, trained by ``benchmark/training/natural.py`` on the embedded
train split as a VAE's decoder and encoder, where the paper trains a WGAN and then its inverter: a WGAN
did not train in CPU minutes, see there); the generator of the RGB-D data makes RGB and depth together,
so on saliency models the attack takes ``modality: rgbd``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AttackOutput, check_norm
from .threat import ThreatModel


class LatentGenerator(nn.Module):
    """A DCGAN-style generator z (N, latent) -> x (N, C, S, S) in [0,1] and its inverter x -> z (the mean of
    a Gaussian posterior; ``posterior`` gives its log-variance too, for training); S = 4 * 2^k."""

    def __init__(self, channels: int, size: int, latent: int = 64, width: int = 32):
        super().__init__()
        self.channels, self.size, self.latent = channels, size, latent
        stages = (size // 4).bit_length() - 1  # 4 -> size by doubling
        if 4 * 2 ** stages != size:
            raise ValueError(f"LatentGenerator: size {size} is not 4 times a power of two")
        widths = [width * 2 ** (stages - i) for i in range(stages + 1)]  # e.g. 128, 64, 32, 16 for width 16
        up: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.project = nn.Sequential(nn.Linear(latent, widths[0] * 16), nn.ReLU())
        self.generator = nn.Sequential(*up, nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Sigmoid())
        down: list[nn.Module] = [nn.Conv2d(channels, widths[-1], 3, 1, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[::-1], widths[::-1][1:]):
            down += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.inverter = nn.Sequential(*down, nn.Flatten(), nn.Linear(widths[0] * 16, 2 * latent))
        self.widths = widths

    def generate(self, z: Tensor) -> Tensor:
        return self.generator(self.project(z).view(len(z), self.widths[0], 4, 4))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The inverter's mean and log-variance of z given x."""
        mean, log_var = self.inverter(x).chunk(2, dim=1)
        return mean, log_var

    def invert(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]


# the generators the attack uses, by name (trained by benchmark/training/natural.py): RGB-D scenes and shapes
# (32 px and width 16 so that each trains in CPU minutes; the RGB-D scenes' are upsampled to a model's size)
GENERATORS = {"natural-vae-rgbd": {"channels": 4, "size": 32, "width": 16},
              "natural-vae-shapes": {"channels": 3, "size": 32, "width": 16}}


def build_generator(name: str) -> LatentGenerator:
    return LatentGenerator(**GENERATORS[name])


def _resized(x: Tensor, size: int) -> Tensor:
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _shell(z: Tensor, samples: int, low: float, high: float) -> tuple[Tensor, Tensor]:
    """``samples`` points per row of z (N, L) at a distance uniform in (low, high] in a uniformly random
    direction: (N, samples, L) and their distances (N, samples)."""
    direction = F.normalize(torch.randn(len(z), samples, z.shape[1], dtype=z.dtype, device=z.device), dim=-1)
    radius = low + (high - low) * (1 - torch.rand(len(z), samples, 1, dtype=z.dtype, device=z.device))
    return z[:, None] + radius * direction, radius[..., 0]


class NaturalAdversary:
    backend = "ours"
    norms = ("latent",)
    trained_networks = {"saliency": "natural-vae-rgbd", "classification": "natural-vae-shapes"}  # per task

    def network(self, name: str, state: dict[str, Tensor]) -> LatentGenerator:
        """The trained generator and inverter ``name`` from its state_dict, in eval mode and frozen."""
        generator = build_generator(name)
        generator.load_state_dict(state)
        return generator.eval().requires_grad_(False)

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 network: LatentGenerator, search: str = "stochastic", samples: int = 32, shells: int = 10,
                 **params: Any) -> AttackOutput:
        check_norm("natural", self.norms, threat)
        if u0.shape[1] != network.channels:
            raise ValueError(f"natural: the generator makes {network.channels}-channel inputs and the attack space "
                             f"has {u0.shape[1]} (its RGB-D generator makes RGB and depth together: modality rgbd)")
        network.to(dtype=u0.dtype)

        def image(z: Tensor) -> Tensor:  # G(z) at the attacked model's resolution
            return _resized(network.generate(z), u0.shape[-1])

        with torch.no_grad():
            start = network.invert(_resized(u0, network.size))
        if search == "stochastic":
            found, dist = self._stochastic(dense, image, start, target, threat.eps, task, samples, shells)
        elif search == "gradient":
            found, dist = self._gradient(dense, image, start, target, threat, task)
        else:
            raise ValueError(f"natural: search is 'stochastic' or 'gradient', not {search!r}")
        fooled = torch.isfinite(dist)
        with torch.no_grad():
            u = torch.where(fooled[:, None, None, None], image(torch.where(fooled[:, None], found, start)), u0)
        moved = (u - u0).flatten(1)
        return AttackOutput(u, {"latent_distance": torch.where(fooled, dist, torch.zeros_like(dist)),
                                "pixel_l2": moved.norm(dim=1), "pixel_linf": moved.abs().amax(1)})

    @staticmethod
    def _stochastic(dense: nn.Module, image, start: Tensor, target: Tensor, eps: float, task: Any, samples: int,
                    shells: int) -> tuple[Tensor, Tensor]:
        """Per image the fooling latent nearest to ``start`` found shell by shell, and its distance (inf: none)."""
        found, dist = start.clone(), torch.full((len(start),), float("inf"), dtype=start.dtype, device=start.device)
        step = eps / shells
        for k in range(shells):
            open_ = ~torch.isfinite(dist)
            if not open_.any():
                break
            z, radius = _shell(start, samples, k * step, (k + 1) * step)
            with torch.no_grad():  # the view takes whole batches: sample j of every image at once
                ok = torch.stack([task.success(dense(image(z[:, j])), target) for j in range(samples)], 1)
            best, j = radius.masked_fill(~ok, float("inf")).min(1)
            hit = torch.isfinite(best) & open_
            found[hit], dist[hit] = z[hit, j[hit]], best[hit]
        return found, dist

    @staticmethod
    def _gradient(dense: nn.Module, image, start: Tensor, target: Tensor, threat: ThreatModel,
                  task: Any) -> tuple[Tensor, Tensor]:
        """Adam on the latent offset within the ball; per image the nearest fooling iterate (inf: none)."""
        found, dist = start.clone(), torch.full((len(start),), float("inf"), dtype=start.dtype, device=start.device)
        d = torch.zeros_like(start, requires_grad=True)
        opt = torch.optim.Adam([d], lr=threat.eps * threat.rel_step)
        for _ in range(threat.steps):
            logits = dense(image(start + d))
            with torch.no_grad():
                norm = d.norm(dim=1)
                better = task.success(logits, target) & (norm < dist)
                found[better], dist[better] = (start + d)[better], norm[better]
            opt.zero_grad()
            task.cw_objective(logits, target).sum().backward()
            opt.step()
            with torch.no_grad():
                d.mul_((threat.eps / d.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0))
        with torch.no_grad():
            logits, norm = dense(image(start + d)), d.norm(dim=1)
            better = task.success(logits, target) & (norm < dist)
            found[better], dist[better] = (start + d)[better], norm[better]
        return found, dist
