"""CLIP-like contrastive models through open_clip, as zero-shot classifiers for the attack registry.

Zero-shot classification (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision", arXiv:2103.00020): each class c gets the text embedding t_c = normalise(mean over
prompt templates of normalise(encode_text(template(c)))); an image x gets

    logits_c(x) = exp(s) * <normalise(encode_image(norm(x))), t_c>,

with the model's learned temperature s. ``norm`` is the architecture's own mean/std normalisation,
inside the model, so attacks work on images in [0,1] at ``input_size``.

The architecture is any open_clip config by name (built-in or registered with
``open_clip.add_model_config``); weights come only from a local file, loaded the open_clip way
(``open_clip.load_checkpoint``: strict, ``weights_only``). Nothing is downloaded: a pretrained *tag*
(e.g. "openai") is refused, and the text/image towers are never initialised from pretrained weights.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import normalize

DEFAULT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")


class CLIPZeroShot(nn.Module):
    """An open_clip model with class prompts: images (N,3,S,S) in [0,1] -> class logits (N,K)."""

    task = "classification"

    def __init__(self, arch: str | None = None, classnames: Sequence[str] = (),
                 templates: Sequence[str] = DEFAULT_TEMPLATES, config: str | Path | None = None):
        """``arch``: an open_clip config name; ``config``: a local open_clip JSON config file to register
        first (its stem is the default ``arch``), for architectures open_clip does not ship."""
        super().__init__()
        if config is not None:
            config = Path(config)
            if not config.is_file():
                raise FileNotFoundError(f"open_clip model config not found: {config}")
            open_clip.add_model_config(config)
            arch = arch or config.stem
        if arch is None:
            raise ValueError("clip needs an open_clip architecture: --model-arg arch=ViT-B-32 "
                             "(or --model-arg config=<open_clip JSON config>)")
        if arch not in open_clip.list_models():
            raise KeyError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models() "
                           f"or register a JSON config with open_clip.add_model_config")
        self.arch = arch
        self.model = open_clip.create_model(arch, pretrained=None, pretrained_image=False, pretrained_text=False)
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        self.mean = tuple(float(v) for v in cfg["mean"])
        self.std = tuple(float(v) for v in cfg["std"])
        size = cfg["size"]
        self.input_size = int(size if isinstance(size, int) else size[0])
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.register_buffer("class_embeddings", torch.zeros(0), persistent=False)
        if classnames:
            self.set_classes(classnames, templates)

    def load_checkpoint(self, path: str | Path) -> None:
        """Strict open_clip loading of a local checkpoint file; errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CLIP checkpoint not found: {path} (a local file; nothing is downloaded)")
        try:
            open_clip.load_checkpoint(self.model, str(path), strict=True, weights_only=True)
        except (RuntimeError, KeyError, ValueError, OSError, pickle.UnpicklingError) as e:
            raise ValueError(f"{path}: not a checkpoint of open_clip architecture {self.arch!r}: {e}") from e
        if self.class_embeddings.numel():  # re-encode the prompts with the loaded text tower
            self.set_classes(self.classnames, self.templates)

    @torch.no_grad()
    def set_classes(self, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> None:
        """Encode the class prompts: t_c = normalise(mean_j normalise(encode_text(template_j(c))))."""
        self.classnames, self.templates = list(classnames), list(templates)
        device = self.model.logit_scale.device
        per_class = []
        for name in self.classnames:
            tokens = self.tokenizer([t.format(name) for t in self.templates]).to(device)
            per_class.append(F.normalize(self.model.encode_text(tokens), dim=-1).mean(0))
        self.class_embeddings = F.normalize(torch.stack(per_class), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        if not self.class_embeddings.numel():
            raise RuntimeError("no classes: call set_classes(classnames) before classifying")
        image = F.normalize(self.model.encode_image(normalize(x, self.mean, self.std)), dim=-1)
        return self.model.logit_scale.exp() * image @ self.class_embeddings.to(image.dtype).T


CONFIG_DIR = Path(__file__).parent / "configs"


def clip_tiny(**kwargs) -> CLIPZeroShot:
    """clip-tiny (``configs/clip-tiny.json``): open_clip's modified ResNet (one bottleneck per stage,
    attention pooling) on 32x32 images with a small text transformer, trained on the embedded captioned
    shapes by ``benchmark.training.clip``. 8.3M parameters, 6.3M of them the text token embedding."""
    if "clip-tiny" not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)
    return CLIPZeroShot("clip-tiny", **kwargs)
