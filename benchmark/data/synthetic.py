"""A generated RGB-D salient-object dataset: the embedded default that makes `make bench` run offline.

Each scene is a textured background plane with one to three objects at different depths. Depth is
near = bright, as in NJU2K/NLPR. The salient object is the nearest one and the GT is its mask. Scene kinds:

- ``contrast``: the salient object differs from the background in colour and in depth;
- ``camouflage``: the salient object has the background's colour: only depth finds it;
- ``distractor``: colourful far objects compete with a duller near one: depth decides which is salient;
- ``noisy_depth``: colour is informative while depth has sensor noise and holes (zeros).

Generation is seeded per (seed, split, index), so any image can be regenerated on its own.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .base import Sample

SCENE_KINDS = ("contrast", "camouflage", "distractor", "noisy_depth")
SPLIT_SIZES = {"train": 480, "test": 64}
_SPLIT_IDS = {"train": 0, "test": 1}
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class _Grid:
    y: np.ndarray
    x: np.ndarray


def _shape_mask(rng: np.random.Generator, g: _Grid, size: int) -> np.ndarray:
    """A random ellipse, rectangle or star-like blob covering roughly 4-20% of the image."""
    cy, cx = rng.uniform(0.25, 0.75, 2) * size
    ry, rx = rng.uniform(0.12, 0.24, 2) * size
    kind = rng.integers(3)
    dy, dx = (g.y - cy) / ry, (g.x - cx) / rx
    if kind == 0:
        return dy**2 + dx**2 <= 1.0
    if kind == 1:
        theta = rng.uniform(0, np.pi)
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    lobes, amp, phase = rng.integers(3, 6), rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi)
    r = np.sqrt(dy**2 + dx**2)
    return r <= 1.0 - amp + amp * np.cos(lobes * np.arctan2(dy, dx) + phase)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0,1]: a random coarse grid upsampled bilinearly."""
    coarse = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _offset_colour(rng: np.random.Generator, reference: np.ndarray, distance: float) -> np.ndarray:
    """A colour at L-inf distance ``distance`` from ``reference`` (reflected to stay in [0,1])."""
    direction = rng.uniform(-1, 1, 3)
    c = reference + distance * direction / np.abs(direction).max()
    return np.where((c < 0) | (c > 1), reference - (c - reference), c)


def make_scene(seed: int, split: str, index: int, size: int = 160) -> Sample:
    """Generate one scene deterministically."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index, GENERATOR_VERSION])
    kind = SCENE_KINDS[index % len(SCENE_KINDS)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    g = _Grid(yy, xx)

    bg_colour = rng.random(3) * 0.7 + 0.15
    texture = _smooth_noise(rng, size, 6)[..., None] - 0.5
    rgb = np.clip(bg_colour + 0.35 * texture * rng.uniform(0.5, 1.0, 3), 0, 1)
    base, tilt = rng.uniform(0.3, 0.5), rng.uniform(-0.1, 0.1, 2)
    depth = base + tilt[0] * (yy / size - 0.5) + tilt[1] * (xx / size - 0.5)
    depth = depth + 0.06 * (_smooth_noise(rng, size, 5) - 0.5)

    n_objects = 1 if kind in ("contrast", "camouflage") else int(rng.integers(2, 4))
    # Moderate contrasts, as in real RGB-D scenes: the nearest object stands 0.06-0.16 above the
    # background plane, distractors 0.02-0.07; colours differ from the background by offsets.
    levels = np.sort(base + rng.uniform(0.02, 0.07, n_objects - 1))
    near = base + rng.uniform(0.06, 0.16)
    masks = []
    # Draw far to near so nearer objects occlude farther ones.
    for level in list(levels) + [near]:
        masks.append(_shape_mask(rng, g, size))
        salient = level == near
        if kind == "camouflage" and salient:
            col = np.clip(bg_colour + 0.35 * texture * 0.8 + rng.normal(0, 0.03, 3), 0, 1)
        else:
            strength = (0.05, 0.12) if kind == "distractor" and salient else (0.1, 0.25)
            col = np.broadcast_to(_offset_colour(rng, bg_colour, rng.uniform(*strength)), rgb.shape)
        shading = 0.85 + 0.15 * _smooth_noise(rng, size, 3)[..., None]
        m = masks[-1]
        rgb[m] = np.clip(col * shading, 0, 1)[m]
        depth[m] = level + 0.04 * (_smooth_noise(rng, size, 2)[m] - 0.5)

    gt = masks[-1].copy()
    depth = depth + rng.normal(0, 0.015, depth.shape)
    if kind == "noisy_depth":
        depth = depth + rng.normal(0, 0.05, depth.shape)
        for _ in range(int(rng.integers(2, 6))):
            depth[_shape_mask(rng, g, size) & (_smooth_noise(rng, size, 8) > 0.6)] = 0.0
    rgb = rgb + rng.normal(0, 0.03, rgb.shape)

    rgb_u8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    depth_u8 = (np.clip(depth, 0, 1) * 255).round().astype(np.uint8)
    return Sample(name=f"{split}_{index:04d}_{kind}", rgb=rgb_u8, depth=depth_u8, gt=gt.astype(np.uint8) * 255)


class SyntheticRGBD:
    """The embedded RGB-D SOD dataset: ``SyntheticRGBD("test")[i]`` is a :class:`Sample`."""

    task = "saliency"

    def __init__(self, split: str = "test", seed: int = 0, size: int = 160, n: int | None = None):
        if split not in SPLIT_SIZES:
            raise ValueError(f"synthetic: unknown split {split!r}; choose from {sorted(SPLIT_SIZES)}")
        self.split, self.seed, self.size = split, seed, size
        self.n = SPLIT_SIZES[split] if n is None else n
        self.name = "synthetic"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return make_scene(self.seed, self.split, i, self.size)

    def manifest_sha256(self) -> str:
        """Hash of every generated array, so a change of the generator changes the manifest."""
        h = hashlib.sha256(f"synthetic/v{GENERATOR_VERSION}/{self.split}/{self.seed}/{self.size}".encode())
        for i in range(self.n):
            s = self[i]
            for a in (s.rgb, s.depth, s.gt):
                h.update(a.tobytes())
        return h.hexdigest()
