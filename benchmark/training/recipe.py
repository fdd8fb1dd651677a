"""What every training recipe shares: a frozen dataclass whose ``id`` hashes every field, so a cached
checkpoint is found again only for the same recipe."""
from __future__ import annotations

from dataclasses import asdict

from benchmark.provenance import sha256_json


class HashedRecipe:
    """Base of the frozen training-recipe dataclasses."""

    @property
    def id(self) -> str:
        return sha256_json(asdict(self))[:8]
