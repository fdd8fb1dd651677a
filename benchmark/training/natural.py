"""Train the generator and inverter of the natural-adversary attack (``attacks/natural.py``) on an embedded
train split, as Zhao, Dua, Singh (ICLR 2018) do: first a WGAN with gradient penalty (Gulrajani et al.
2017, "Improved Training of Wasserstein GANs"),

    min_G max_C  E_x C(x) - E_z C(G(z)) - lambda_gp E_x^ (||grad C(x^)||_2 - 1)^2,   z ~ N(0, I),

x^ uniform on the segments between real and generated images, ``critic_steps`` critic updates per
generator update; then, with G frozen, the inverter

    min_I  E_x ||G(I(x)) - x||^2 + lambda_z E_z ||I(G(z)) - z||^2.

``natural-gan-rgbd``: RGB and depth of the synthetic RGB-D scenes together, 4 channels at 64 px;
``natural-gan-shapes``: the captioned shapes, 3 channels at 32 px. Held out: how well G(I(x)) reconstructs
the test split (PSNR per modality), the quality the attack's searches start from.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from attacks.natural import GANS, build_gan
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.data.shapes import CaptionedShapes
from benchmark.data.shapes import GENERATOR_VERSION as SHAPES_VERSION
from benchmark.data.synthetic import GENERATOR_VERSION as SYNTHETIC_VERSION
from benchmark.results import save_trained
from benchmark.training.clip import shape_images
from benchmark.training.recipe import HashedRecipe


@dataclass(frozen=True)
class NaturalGANRecipe(HashedRecipe):
    data: str = "synthetic"  # the train split: synthetic (RGB-D scenes) or shapes
    gan_steps: int = 1500  # generator updates
    critic_steps: int = 5
    inverter_steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-4
    gradient_penalty: float = 10.0
    latent_weight: float = 0.1  # lambda_z
    seed: int = 0
    train_images: int = 1920
    data_version: int = SYNTHETIC_VERSION


RECIPES = {"natural-gan-rgbd": NaturalGANRecipe(),
           "natural-gan-shapes": NaturalGANRecipe(data="shapes", train_images=6000, data_version=SHAPES_VERSION)}


class Critic(nn.Module):
    """x (N, C, S, S) -> (N,) score; no normalisation (the gradient penalty is per sample)."""

    def __init__(self, channels: int, size: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, s = channels, size
        while s > 4:
            layers += [nn.Conv2d(c_in, width, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in, width, s = width, 2 * width, s // 2
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * 16, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]


def train_images(recipe: NaturalGANRecipe, split: str, size: int, n: int | None = None) -> Tensor:
    """The split's images in [0,1] at the GAN's resolution: RGB and depth stacked, or the shapes' RGB."""
    if recipe.data == "synthetic":
        ds = SyntheticRGBD(split) if n is None else SyntheticRGBD(split, n=n)
        b = make_batch([ds[i] for i in range(len(ds))], size)
        return torch.cat([b.rgb, b.depth], 1)
    if recipe.data == "shapes":
        x = shape_images(CaptionedShapes(split) if n is None else CaptionedShapes(split, n=n))[0]
        return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    raise ValueError(f"natural GAN recipe: data is 'synthetic' or 'shapes', not {recipe.data!r}")


def _penalty(critic: Critic, real: Tensor, fake: Tensor) -> Tensor:
    a = torch.rand(len(real), 1, 1, 1, dtype=real.dtype)
    mixed = (a * real + (1 - a) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def psnr(x: Tensor, y: Tensor) -> float:
    return 10 * math.log10(1 / max(F.mse_loss(x, y).item(), 1e-12))


@torch.no_grad()
def evaluate(gan: nn.Module, recipe: NaturalGANRecipe) -> dict[str, float]:
    """PSNR of G(I(x)) against x on the test split, per modality (RGB, and depth for RGB-D)."""
    gan.eval()
    x = train_images(recipe, "test", gan.size)
    rec = gan.generate(gan.invert(x))
    scores = {"psnr_rgb": psnr(rec[:, :3], x[:, :3])}
    if x.shape[1] == 4:
        scores["psnr_depth"] = psnr(rec[:, 3:], x[:, 3:])
    return scores


def train_natural_gan(name: str, out: Path, recipe: NaturalGANRecipe | None = None,
                      device: str = "cpu") -> dict[str, float]:
    """Train ``name``'s generator (WGAN-GP) and then its inverter; save both to ``out``; return the test PSNRs."""
    recipe = recipe or RECIPES[name]
    start = time.time()
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    gan = build_gan(name).to(device)
    critic = Critic(GANS[name]["channels"], gan.size).to(device)
    x = train_images(recipe, "train", gan.size, recipe.train_images).to(device)
    rng = np.random.default_rng(recipe.seed)

    def real() -> Tensor:
        return x[torch.from_numpy(rng.integers(0, len(x), recipe.batch_size)).to(device)]

    def noise() -> Tensor:
        return torch.randn(recipe.batch_size, gan.latent, device=device)

    opt_g = torch.optim.Adam([*gan.project.parameters(), *gan.generator.parameters()], recipe.lr, betas=(0.5, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), recipe.lr, betas=(0.5, 0.9))
    gan.train()
    for _ in tqdm(range(recipe.gan_steps), desc=f"train {name} (WGAN-GP)", unit="step"):
        for _ in range(recipe.critic_steps):
            r, f = real(), gan.generate(noise()).detach()
            loss_c = critic(f).mean() - critic(r).mean() + recipe.gradient_penalty * _penalty(critic, r, f)
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
        loss_g = -critic(gan.generate(noise())).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    gan.eval()  # G frozen (BatchNorm's running statistics too) while the inverter learns
    gan.project.requires_grad_(False)
    gan.generator.requires_grad_(False)
    opt_i = torch.optim.Adam(gan.inverter.parameters(), recipe.lr, betas=(0.5, 0.9))
    for _ in tqdm(range(recipe.inverter_steps), desc=f"train {name} (inverter)", unit="step"):
        r, z = real(), noise()
        with torch.no_grad():
            g = gan.generate(z)
        loss = (F.mse_loss(gan.generate(gan.invert(r)), r)
                + recipe.latent_weight * F.mse_loss(gan.invert(g), z))
        opt_i.zero_grad()
        loss.backward()
        opt_i.step()
    gan.cpu().requires_grad_(True)
    scores = evaluate(gan, recipe)
    save_trained(out, gan.state_dict(), {"model": name, "recipe": asdict(recipe),
                                         "seconds": round(time.time() - start, 1), "test": scores})
    return scores
