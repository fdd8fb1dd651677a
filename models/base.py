"""The contract every RGB-D saliency model in the registry follows.

    m = build_model("jldcf", backbone="resnet101")  # random init; nothing is downloaded
    m.load_official_checkpoint(path_or_state_dict)  # strict=True
    m.eval(); logits = m(rgb, depth)                # rgb (N,3,S,S), depth (N,1,S,S) in [0,1]
                                                    # -> (N,1,S,S) pre-sigmoid logits
    prob = m.postprocess(logits, size)              # official test-time post-processing, (N,1,H,W)

Inputs are in [0,1] pixel space at the network resolution S = ``m.input_size``; each model applies its
own official pre-processing (normalisation, depth replication) inside ``forward`` so that attacks
perturb pixels, not normalised tensors. How the dataset's files reach resolution S (depth conversion,
resize library and mode) follows the official test loader the model names as ``input_loader``
(``models/preprocessing.py``). A model whose official test decides something at each image's GT size
(D3Net's depth depurator) sets ``takes_gt_sizes`` and takes ``gt_sizes=[(H, W), ...]`` in ``forward``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.preprocessing import InputLoader


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean) / std per channel, with the constants built in ``x``'s dtype from Python floats
    (as torchvision's ``Normalize``), so a model run in float64 is exact."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Load a checkpoint with ``weights_only=True``; a clear error names the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, non-tensor payloads
        raise ValueError(f"{path}: not a loadable weights-only PyTorch checkpoint ({e})") from e
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state_dict (a mapping), got {type(obj).__name__}")
    return dict(obj)


def strip_prefix(sd: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Drop a DataParallel ``module.`` prefix when every key carries it."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def straight_through(exact: Tensor, surrogate: Tensor) -> Tensor:
    """``exact``'s value with ``surrogate``'s gradient (BPDA, Athalye et al. 2018): g + (f - g).detach()."""
    return surrogate + (exact.to(surrogate.dtype) - surrogate).detach()


class ModelView(nn.Module):
    """Base of a module that wraps ``model`` (a task's attacked view, a defended model): it starts in the
    model's train/eval mode. A new Module starts in train mode, and attack libraries restore the
    wrapper's mode after attacking, which would flip the wrapped model to train mode (and let BatchNorm
    update its statistics)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)


class ModelWrapper(ModelView):
    """A view that stands in for ``model`` itself (a defended model, an adaptive view): the attributes it
    lacks (input size, loader, post-processing) are the model's. Attack views do not forward: a view
    must not pass for the module it wraps (e.g. answer ``copies_of`` with the wrapped model's)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


class SaliencyModel(nn.Module):
    """Base class: subclasses set ``input_size`` and implement ``forward``."""

    task = "saliency"
    input_size: int = 320
    input_loader: ClassVar[InputLoader | None] = None  # None: the benchmark's own float bilinear resize
    takes_gt_sizes: ClassVar[bool] = False

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_official_checkpoint(self, src: str | Path | Mapping[str, Tensor]) -> None:
        """Load an official release (a plain state_dict by default) with ``strict=True``."""
        sd = load_state_dict_file(src) if isinstance(src, (str, Path)) else dict(src)
        self.load_strict(strip_prefix(sd), str(src) if isinstance(src, (str, Path)) else "state_dict")

    def load_strict(self, sd: Mapping[str, Tensor], source: str) -> None:
        """``load_state_dict(strict=True)`` whose error names where the weights came from."""
        try:
            self.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"{source}: does not match {type(self).__name__} ({e})") from e

    def postprocess(self, logits: Tensor, size: tuple[int, int]) -> Tensor:
        """Official test-time post-processing to a probability map at the GT size (H, W).

        Default (BBS-Net / JL-DCF style): bilinear resize of the logits, sigmoid, per-image min-max.
        """
        up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        p = up.sigmoid()
        lo = p.amin(dim=(1, 2, 3), keepdim=True)
        hi = p.amax(dim=(1, 2, 3), keepdim=True)
        return (p - lo) / (hi - lo + 1e-8)
