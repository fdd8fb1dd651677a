"""AdvGAN (Xiao, Li, Zhu, He, Liu, Song, IJCAI 2018, "Generating Adversarial Examples with Adversarial
Networks"): a generator G, trained once, outputs a perturbation for any input in one forward pass. G is
trained against the attacked model f (or a surrogate, or an ensemble of surrogates: the cell's
``surrogate``) together with a discriminator D that tells clean inputs from perturbed ones:

    min_G max_D  L_adv + alpha L_GAN,
    L_GAN = E_x log D(x) + E_x log(1 - D(x + G(x))),
    L_adv = E_x l_f(x + G(x), y)      (the C&W loss the paper uses: the task's ``cw_objective``, kappa 0)

The paper bounds the perturbation softly, with a hinge on its L2 norm (beta L_hinge); the benchmark's
threat is a hard L-inf ball, so G's output is squashed into it instead, G(x) = eps * tanh(g(x)), and the
hinge has nothing left to do. Saliency: l_f is the mean pixel hinge on the GT's side of each pixel (the
map is pushed away from the GT); classification: the margin of the true class.

G and D follow the paper's shapes, small (CPU minutes): G is an encoder (a 7x7 convolution, two stride-2
convolutions), ``blocks`` residual blocks and a decoder (two stride-2 transposed convolutions, a 7x7
convolution), instance norm and ReLU; D three stride-2 convolutions with leaky ReLU and a logit per
image. They work in the attack space (RGB, depth or both stacked). Fitted like a universal attack: once
per cell on the train split (``fit_images``, ``epochs``), then each test batch costs one forward pass of
G; the fitted G is saved with the run. Measured on jldcf-tiny (16 test images, 8/255 rgbd; 128 train images x
20 epochs, fitted in about 3 CPU minutes): S 0.879 -> 0.704 (PGD-20: 0.577), 0.16 s for the 16 images against
PGD-20's 9.6 s; without the GAN term (alpha 0) 0.689.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import check_norm
from .threat import ThreatModel


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2), nn.InstanceNorm2d(c_out, affine=True), nn.ReLU()]


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(*_conv(c, c, 3), nn.Conv2d(c, c, 3, 1, 1), nn.InstanceNorm2d(c, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """x (N,C,H,W) in [0,1] -> g(x) (N,C,H,W), unbounded (the attack squashes it)."""

    def __init__(self, channels: int, width: int = 16, blocks: int = 4):
        super().__init__()
        self.net = nn.Sequential(
            *_conv(channels, width // 2, 7), *_conv(width // 2, width, 3, 2), *_conv(width, 2 * width, 3, 2),
            *(_Residual(2 * width) for _ in range(blocks)),
            nn.ConvTranspose2d(2 * width, width, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(width, affine=True),
            nn.ReLU(), nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1),
            nn.InstanceNorm2d(width // 2, affine=True), nn.ReLU(), nn.Conv2d(width // 2, channels, 7, 1, 3))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % 4, 0, -h % 4), mode="replicate")  # two stride-2 stages and back
        return self.net(padded)[..., :h, :w]


class Discriminator(nn.Module):
    """x (N,C,S,S) -> (N,) logit that x is a clean input."""

    def __init__(self, channels: int, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((channels, width), (width, 2 * width), (2 * width, 4 * width)):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Conv2d(4 * width, 1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1).mean(1)


def perturb(generator: Generator, u0: Tensor, eps: float) -> Tensor:
    """x + eps * tanh(g(x)), clipped to [0,1]: inside the L-inf ball by construction."""
    return (u0 + eps * torch.tanh(generator(u0))).clamp(0, 1)


class AdvGAN:
    backend = "ours"
    norms = ("linf",)
    universal_kind = "generator"

    def fit(self, views: Callable[[], Iterator[tuple[nn.Module, Tensor, Tensor, list[str]]]], threat: ThreatModel,
            task: Any, *, epochs: int = 10, lr: float = 1e-3, alpha: float = 0.1, width: int = 16, blocks: int = 4,
            **params: Any) -> dict[str, Tensor]:
        """Train G (and D) for ``epochs`` passes over ``views()``; return G's state_dict."""
        check_norm("advgan", self.norms, threat)
        generator = discriminator = None
        for _ in range(epochs):
            for dense, u0, target, _names in views():
                if generator is None:
                    generator = Generator(u0.shape[1], width, blocks).to(u0)
                    discriminator = Discriminator(u0.shape[1], width).to(u0)
                    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
                    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
                u = perturb(generator, u0, threat.space_eps)
                real, fake = discriminator(u0), discriminator(u.detach())
                loss_d = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                          + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                fooled = discriminator(u)
                loss_gan = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
                loss_g = task.cw_objective(dense(u), target).mean() + alpha * loss_gan
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()
        if generator is None:
            raise ValueError("advgan: the training split yielded no batches")
        return {k: v.detach() for k, v in generator.state_dict().items()}

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 universal: dict[str, Tensor], width: int = 16, blocks: int = 4, **params: Any) -> Tensor:
        check_norm("advgan", self.norms, threat)
        generator = Generator(u0.shape[1], width, blocks).to(u0)
        generator.load_state_dict(universal)
        with torch.no_grad():
            return perturb(generator.eval(), u0, threat.space_eps)
