"""A generated captioned image dataset ("shapes"): the embedded data that clip-tiny learns from offline.

Each image shows one main object (a shape class, in a named colour and size, at a named position) on a
textured background, sometimes with a small distractor of another class and colour; the caption says
what the main object is, from one of several templates. Shapes are rasterised at 4x and box-filtered
(anti-aliased), then jittered in position, size and rotation, and the image gets pixel noise.

Generation is seeded per (seed, split, index), so any item can be regenerated on its own.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

from .labelled import ZERO_SHOT_TEMPLATES, LabelledImage

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "heart", "diamond")
COLOURS = {"red": (0.85, 0.12, 0.12), "green": (0.15, 0.70, 0.20), "blue": (0.15, 0.30, 0.90),
           "yellow": (0.95, 0.85, 0.15), "orange": (0.95, 0.50, 0.10), "purple": (0.60, 0.20, 0.75)}
SIZES = {"small": (0.18, 0.22), "large": (0.27, 0.32)}  # radius as a fraction of the image side
POSITIONS = {  # (phrase, centre x range, centre y range), fractions of the image side
    "left": ("on the left", (0.30, 0.38), (0.40, 0.60)),
    "right": ("on the right", (0.62, 0.70), (0.40, 0.60)),
    "top": ("at the top", (0.40, 0.60), (0.30, 0.38)),
    "bottom": ("at the bottom", (0.40, 0.60), (0.62, 0.70)),
    "centre": ("in the centre", (0.44, 0.56), (0.44, 0.56)),
}
TEMPLATES = (
    "a photo of a {size} {colour} {cls}.",
    "a {colour} {cls} {pos}.",
    "there is a {size} {colour} {cls} on a {bg} background.",
    "an image of a {cls} {pos}.",
    "a {size} {cls} in {colour}.",
    "a picture of a {colour} {cls}.",
    "a drawing of a {cls} {pos}, coloured {colour}.",
    "the {cls} is {colour} and {size}.",
    "a {size} {cls} {pos} on a {bg} background.",
    "a {bg} background with a {colour} {cls}.",
)
BACKGROUNDS = ("dark", "grey", "light")  # the background's word, by its grey level (``_background``)
SPLIT_SIZES = {"train": 6000, "test": 256}
_SPLIT_IDS = {"train": 0, "test": 1}
GENERATOR_VERSION = 1
_SUPERSAMPLE = 4


def _inside(cls: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape ``cls`` in unit coordinates (u right, v up; the shape spans about [-1,1]^2)."""
    r = np.hypot(u, v)
    if cls == "circle":
        return r <= 0.9
    if cls == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if cls == "triangle":  # equilateral, pointing up, circumradius 1
        return (v >= -0.5) & (np.sqrt(3) * np.abs(u) + v <= 1)
    if cls == "star":  # five points: the radius rises from 0.4 between points to 1 at each point
        frac = (np.arctan2(u, v) * 5 / (2 * np.pi)) % 1
        return r <= 0.4 + 0.6 * (2 * np.abs(frac - 0.5)) ** 2
    if cls == "cross":
        return ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.9)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 0.9))
    if cls == "ring":
        return (r >= 0.5) & (r <= 0.95)
    if cls == "heart":  # (x^2 + y^2 - 1)^3 <= x^2 y^3
        x, y = 1.15 * u, 1.15 * v + 0.15
        return (x**2 + y**2 - 1) ** 3 <= x**2 * y**3
    if cls == "diamond":  # a tall rhombus, so that it is not a rotated square
        return np.abs(u) / 0.6 + np.abs(v) / 0.95 <= 1
    raise KeyError(cls)


def _coverage(cls: str, size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Anti-aliased coverage in [0,1] of a rotated shape centred at (cx, cy) pixels, (size, size)."""
    t = (np.arange(size * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    dy, dx = (t[:, None] - cy) / radius, (t[None, :] - cx) / radius
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx - s * dy, -(s * dx + c * dy)  # rotate, and flip y so that v points up
    fine = _inside(cls, u, v).astype(np.float64)
    return fine.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean((1, 3))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0,1]: a random coarse grid upsampled bilinearly."""
    coarse = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A tinted grey with smooth texture, sometimes stripes; and its word: dark, grey or light."""
    level = rng.uniform(0.15, 0.85)
    rgb = level + rng.uniform(-0.06, 0.06, 3) + 0.25 * (_smooth_noise(rng, size, 4)[..., None] - 0.5)
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:size, 0:size]
        theta, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
        rgb = rgb + 0.06 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)[..., None]
    dark, grey, light = BACKGROUNDS
    word = dark if level < 0.38 else light if level > 0.62 else grey
    return rgb, word


def _paint(rng: np.random.Generator, rgb: np.ndarray, alpha: np.ndarray, colour: str) -> np.ndarray:
    """Composite a jittered, softly shaded named colour over ``rgb`` with coverage ``alpha``."""
    base = np.asarray(COLOURS[colour]) + rng.uniform(-0.08, 0.08, 3)
    shade = 0.85 + 0.15 * _smooth_noise(rng, rgb.shape[0], 3)[..., None]
    return alpha[..., None] * base * shade + (1 - alpha[..., None]) * rgb


def with_articles(text: str) -> str:
    """'a orange' -> 'an orange'."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def make_item(seed: int, split: str, index: int, size: int = 32) -> LabelledImage:
    """Generate one captioned image deterministically; classes cycle with the index (balanced splits)."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index, GENERATOR_VERSION])
    label = index % len(CLASSES)
    cls = CLASSES[label]
    colour = str(rng.choice(list(COLOURS)))
    size_word = str(rng.choice(list(SIZES)))
    position = str(rng.choice(list(POSITIONS)))
    phrase, xr, yr = POSITIONS[position]
    cx, cy = rng.uniform(*xr) * size, rng.uniform(*yr) * size
    radius = rng.uniform(*SIZES[size_word]) * size

    rgb, bg = _background(rng, size)
    if rng.random() < 0.35:  # a small distractor of another class and colour, away from the main object
        other = CLASSES[(label + rng.integers(1, len(CLASSES))) % len(CLASSES)]
        other_colour = str(rng.choice([c for c in COLOURS if c != colour]))
        r_d = rng.uniform(0.08, 0.11) * size
        for _ in range(20):
            dx, dy = rng.uniform(r_d, size - r_d, 2)
            if np.hypot(dx - cx, dy - cy) > radius + r_d + 1:
                rgb = _paint(rng, rgb, _coverage(other, size, dx, dy, r_d, rng.uniform(0, 2 * np.pi)), other_colour)
                break
    angle = np.deg2rad(rng.uniform(-25, 25))
    rgb = _paint(rng, rgb, _coverage(cls, size, cx, cy, radius, angle), colour)
    rgb = rgb + rng.normal(0, rng.uniform(0.01, 0.05), rgb.shape)

    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    caption = with_articles(template.format(size=size_word, colour=colour, cls=cls, pos=phrase, bg=bg))
    rgb_u8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    return LabelledImage(name=f"{split}_{index:05d}_{cls}", rgb=rgb_u8, label=label, caption=caption)


class CaptionedShapes:
    """The embedded captioned dataset: ``CaptionedShapes("test")[i]`` is a :class:`LabelledImage`."""

    name = "shapes"
    task = "classification"
    query = "rgb"
    templates = ZERO_SHOT_TEMPLATES  # zero-shot prompts: "a photo of a {classname}." ...

    def __init__(self, split: str = "test", seed: int = 0, size: int = 32, n: int | None = None):
        if split not in SPLIT_SIZES:
            raise ValueError(f"shapes: unknown split {split!r}; choose from {sorted(SPLIT_SIZES)}")
        self.split, self.seed, self.size = split, seed, size
        self.n = SPLIT_SIZES[split] if n is None else n
        self.classnames = list(CLASSES)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> LabelledImage:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return make_item(self.seed, self.split, i, self.size)

    def manifest_sha256(self) -> str:
        """Hash of every generated image, label and caption, so a change of the generator changes it."""
        h = hashlib.sha256(f"shapes/v{GENERATOR_VERSION}/{self.split}/{self.seed}/{self.size}".encode())
        for i in range(self.n):
            item = self[i]
            h.update(item.rgb.tobytes())
            h.update(f"{item.label}:{item.caption}\n".encode())
        return h.hexdigest()
