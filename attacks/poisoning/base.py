"""The contract every poisoning attack on image-caption training data implements.

A :class:`Poisoning` is a frozen dataclass of its parameters: ``target`` (the class name the poisoned
captions name), ``rate`` (poisoned pairs as a fraction of the train set: round(rate N) of them),
``seed`` (everything random in the attack, trigger included, comes from it) and ``captions`` (how a
caption naming the target is made). ``poison(train, held_out)`` returns the poisoned training set as
:class:`PoisonedPairs`: the pairs to train on, with a :class:`PoisonRecord` for every poisoned pair so
that a defense's filter can be scored against it. A *backdoor* (:class:`Backdoor`) also has
``apply_trigger(images)``, the trigger T applied at test time to measure attack success; a targeted
poisoning attack names, in ``target_images``, the held-out images it wants classified as its target.

Images are (N,3,H,W) float tensors in [0,1] (what ``benchmark.training.clip.shape_images`` gives).
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from benchmark.data.shapes import BACKGROUNDS, COLOURS, POSITIONS, SIZES, TEMPLATES, with_articles


@dataclass(frozen=True, eq=False)
class Pairs:
    """Image-caption pairs: ``images`` (N,3,H,W) in [0,1], ``captions``, ``labels`` (N,) the class each
    image shows (None where the data has none, e.g. a scraped caption CSV) and the ``classnames`` the
    labels index and a target must be one of. ``Pairs(*shape_images(ds), CLASSES)`` for the shapes."""

    images: Tensor
    captions: Sequence[str]
    labels: Tensor | None
    classnames: Sequence[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or not self.images.is_floating_point():
            raise ValueError(f"images must be a float (N,C,H,W) tensor in [0,1], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if len(self.captions) != len(self.images) or (self.labels is not None and len(self.labels) != len(self.images)):
            raise ValueError(f"{len(self.images)} images, {len(self.captions)} captions and "
                             f"{'no' if self.labels is None else len(self.labels)} labels do not pair up")

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class PoisonRecord:
    """One poisoned pair: its ``index`` in the poisoned set, the attack's ``kind``, the ``source`` image
    (its index in the train set for a backdoor, in the held-out set for targeted poisoning) and the
    ``target`` class its caption names."""

    index: int
    kind: str
    source: int
    target: str


@dataclass(frozen=True, eq=False)
class PoisonedPairs(Pairs):
    """The training set an attack leaves: the pairs, ``records`` (one per poisoned pair, by index) and,
    for targeted poisoning, ``target_images``: held-out index -> the class the attack wants it to get."""

    records: tuple[PoisonRecord, ...] = ()
    target_images: Mapping[int, str] = field(default_factory=dict)

    @property
    def is_poisoned(self) -> Tensor:
        """(N,) bool: which pairs are poisoned."""
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[[r.index for r in self.records]] = True
        return mask


def names_class(caption: str, classname: str) -> bool:
    """Whether ``caption`` names ``classname`` as a whole word or phrase (case-insensitive)."""
    return re.search(rf"\b{re.escape(classname)}\b", caption, re.IGNORECASE) is not None


@dataclass(frozen=True)
class CaptionTemplates:
    """Captions naming a class: a template drawn uniformly from ``templates``, the class filled in at
    ``{}`` or ``{cls}``, every other named slot with a word drawn uniformly from its ``slots`` entry
    (slot, words), and "a" before a vowel made "an". ``CaptionTemplates(("a photo of a {}.",))`` for a
    real data set. Hashable, like the attacks that hold it."""

    templates: tuple[str, ...]
    slots: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __call__(self, classname: str, n: int, rng: np.random.Generator) -> list[str]:
        captions = []
        for _ in range(n):
            template = self.templates[rng.integers(len(self.templates))]
            words = {slot: str(rng.choice(choices)) for slot, choices in self.slots}
            captions.append(with_articles(template.format(classname, cls=classname, **words)))
        return captions


# the shapes captions (``benchmark/data/shapes.py``) with their own vocabulary for the other slots
SHAPES_CAPTIONS = CaptionTemplates(TEMPLATES, (
    ("size", tuple(SIZES)), ("colour", tuple(COLOURS)), ("pos", tuple(phrase for phrase, _, _ in POSITIONS.values())),
    ("bg", BACKGROUNDS),
))


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per (seed, purpose): the trigger does not change with the rate."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


@dataclass(frozen=True)
class Poisoning:
    """Base of the poisoning attacks; ``kind`` is the attack's registry name, written into its records."""

    target: str
    rate: float = 0.01
    seed: int = 0
    captions: CaptionTemplates = SHAPES_CAPTIONS
    kind: ClassVar[str]

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:  # NaN fails too
            raise ValueError(f"poison rate must be in [0, 1] (a fraction of the train set), got {self.rate!r}")

    def count(self, n_train: int) -> int:
        """How many pairs are poisoned in a train set of ``n_train``: round(rate N), halves up."""
        return math.floor(self.rate * n_train + 0.5)

    def target_label(self, classnames: Sequence[str]) -> int:
        """The target's class index; a target not among ``classnames`` is a ValueError naming both."""
        if self.target not in classnames:
            raise ValueError(f"target class {self.target!r} is not one of the classes {list(classnames)}")
        return list(classnames).index(self.target)

    def poison(self, train: Pairs, held_out: Pairs | None = None) -> PoisonedPairs:
        """The poisoned training set; ``held_out`` (labelled) is where targeted poisoning takes its target
        images from, a backdoor does not use it. The inputs are left unchanged."""
        raise NotImplementedError


@dataclass(frozen=True)
class Backdoor(Poisoning):
    """A backdoor: round(rate N) pairs, drawn without replacement from the ``candidates``, become
    (T(x_i), caption naming the target); the others are left as they are. A subclass implements the
    trigger ``_trigger(images, rng)`` (``rng`` only for a random placement); ``apply_trigger`` is T at
    test time, its random draws from a stream of its own (the same images get the same trigger)."""

    def apply_trigger(self, images: Tensor) -> Tensor:
        return self._trigger(images, rng_for(self.seed, "test"))

    def _trigger(self, images: Tensor, rng: np.random.Generator) -> Tensor:
        raise NotImplementedError

    def candidates(self, train: Pairs) -> np.ndarray:
        """The indices of the pairs it may poison: all of them."""
        return np.arange(len(train))

    def poisoned_captions(self, train: Pairs, chosen: np.ndarray, rng: np.random.Generator) -> list[str]:
        """The captions of the poisoned pairs: drawn from ``captions`` with the target."""
        return self.captions(self.target, len(chosen), rng)

    def poison(self, train: Pairs, held_out: Pairs | None = None) -> PoisonedPairs:
        self.target_label(train.classnames)
        n_poison, pool = self.count(len(train)), self.candidates(train)
        if n_poison > len(pool):
            raise ValueError(f"{type(self).__name__}: rate {self.rate} asks for {n_poison} poisoned pairs, but only "
                             f"{len(pool)} of the {len(train)} pairs can be poisoned")
        rng = rng_for(self.seed, "poison")
        chosen = np.sort(rng.choice(pool, n_poison, replace=False))
        images, captions = train.images.clone(), list(train.captions)
        rows = torch.from_numpy(chosen)
        images[rows] = self._trigger(train.images[rows], rng)
        for i, caption in zip(chosen.tolist(), self.poisoned_captions(train, chosen, rng)):
            captions[i] = caption
        records = tuple(PoisonRecord(i, self.kind, i, self.target) for i in chosen.tolist())
        return PoisonedPairs(images, captions, train.labels, train.classnames, records)
