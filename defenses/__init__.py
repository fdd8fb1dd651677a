"""Defense registry: one module per defense, one line here. ``build_defense(name, **params)`` builds one
with the paper's (or library's) defaults for the params not given; see ``defenses/base.py`` for the
contract and ``defenses/defended.py`` for the defended model an attack sees."""
from __future__ import annotations

import inspect
from typing import Any

from .base import DEFENSE_MODALITIES, Defense, DefenseOutput, PatchDefense
from .bilateral import BilateralFilter
from .bits import BitDepthReduction
from .defended import DefendedModel, ExpectationOverTransformation
from .depth_consistency import DepthConsistency
from .depth_dropout import DepthDropout
from .feature_shield import FeatureShield
from .gaussian import GaussianBlur
from .hole_fill import HoleFilling
from .jedi import Jedi
from .jpeg import JPEG
from .lgs import LocalGradientsSmoothing
from .median import MedianSmoothing
from .patch_cleanser import PatchCleanser
from .patch_segmenter import PatchSegmenter
from .resize_pad import RandomResizePad
from .tvm import TotalVariationMinimization

DEFENSES: dict[str, type[Defense] | None] = {
    "none": None,  # the undefended model
    # input transforms, on rgb, depth or both
    "jpeg": JPEG,  # quality 75
    "bits": BitDepthReduction,  # feature squeezing, 4 bits; on depth: depth quantisation
    "median": MedianSmoothing,  # 3x3
    "gaussian": GaussianBlur,  # sigma 1
    "tvm": TotalVariationMinimization,  # randomized
    "resize-pad": RandomResizePad,  # randomized
    # depth defenses
    "bilateral": BilateralFilter,  # on depth by default
    "hole-fill": HoleFilling,
    "depth-dropout": DepthDropout,  # blur or constant
    # patch defenses: out.mask is where they locate the patch
    "lgs": LocalGradientsSmoothing,  # local gradients smoothing
    "jedi": Jedi,  # local entropy, in-painted
    "feature-shield": FeatureShield,  # FFT high-frequency outliers, blurred
    "depth-consistency": DepthConsistency,  # ours: structure one modality has and the other lacks
    "patch-segmenter": PatchSegmenter,  # learned (SAC / PatchZero style), trained by our recipe
    # classifier-level: wraps the model (wrap(model)), certifies
    "patch-cleanser": PatchCleanser,  # double masking
}


def build_defense(name: str, **params: Any) -> Defense:
    """The defense ``name`` with ``params``; an unknown name or a param it does not take is a ValueError
    naming both."""
    if name not in DEFENSES or DEFENSES[name] is None:
        raise ValueError(f"unknown defense {name!r}; registered: {sorted(k for k in DEFENSES if k != 'none')}")
    cls = DEFENSES[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"defense {name!r} takes {accepted}, not {unknown}")
    return cls(**params)


__all__ = ["DEFENSES", "DEFENSE_MODALITIES", "DefendedModel", "Defense", "DefenseOutput",
           "ExpectationOverTransformation", "PatchDefense", "build_defense"]
