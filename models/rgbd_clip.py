"""RGB-D CLIP: RGB and depth as two modalities, aligned contrastively, with an image-depth matching head.

Two CNN encoders map an RGB image and a depth map to feature maps (N,C,h,w); a per-position linear
projection (1x1 conv) to k channels, flattened and L2-normalised, gives the embeddings e_rgb, e_depth in
R^D, D = k*h*w. What an RGB image shares with its own depth map is where its objects are, so the
embedding keeps the layout instead of pooling it away. Trained with CLIP's symmetric contrastive loss
(Radford et al. 2021, arXiv:2103.00020) on

    S_ij = exp(s) * <e_rgb_i, e_depth_j>,  exp(s) <= 100,

and an image-depth matching (ITM) head over both encoders' feature tokens, as ALBEF's image-text
matching (Li et al. 2021, "Align before Fuse", arXiv:2107.07651), see :class:`MatchingHead`.

For the benchmark, retrieval is classification over a gallery: after ``set_gallery(g, query="rgb")``
the gallery holds depth maps g_1..g_G and ``forward(x) = exp(s) * e_rgb(x) @ [e_depth(g_1) .. e_depth(g_G)]^T``
(N,G); ``query="depth"`` swaps the roles. Inputs are in [0,1] at ``input_size``; normalisation is inside.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import IMAGENET_MEAN, IMAGENET_STD, load_state_dict_file, normalize

# Depth has no standard statistics: mean and std of the synthetic train split, rounded.
DEPTH_MEAN = (0.4,)
DEPTH_STD = (0.1,)
QUERIES = ("rgb", "depth")


class ConvEncoder(nn.Module):
    """Stages of [conv3x3 stride 2, conv3x3], each followed by BatchNorm and ReLU: (N,C,S,S) ->
    (N,widths[-1],S/2^k,S/2^k) for k = len(widths)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            for stride in (2, 1):
                layers += [nn.Conv2d(in_channels, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                in_channels = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MatchingHead(nn.Module):
    """ITM head: feature maps of an RGB image and a depth map -> (N,2) logits, index 1 = "matched".

    ALBEF fuses text into image tokens by cross-attention; RGB and depth maps are pixel-aligned, so here
    the tokens at the same position p are fused directly,
    t_p = W [r_p, d_p, r_p * d_p] + pos_p (r, d: linear maps of the features), and a [CLS] token
    self-attends over them in a small pre-LayerNorm transformer; its output is classified.
    """

    def __init__(self, channels: int, tokens: int, width: int, heads: int, layers: int):
        super().__init__()
        self.rgb_in = nn.Linear(channels, width)
        self.depth_in = nn.Linear(channels, width)
        self.fuse = nn.Linear(3 * width, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(0.02 * torch.randn(1, tokens, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, 2)

    def forward(self, rgb_map: Tensor, depth_map: Tensor) -> Tensor:
        r = self.rgb_in(rgb_map.flatten(2).transpose(1, 2))
        d = self.depth_in(depth_map.flatten(2).transpose(1, 2))
        x = self.fuse(torch.cat([r, d, r * d], -1)) + self.position
        x = self.encoder(torch.cat([self.cls.expand(len(x), -1, -1), x], 1))
        return self.classifier(self.norm(x[:, 0]))


class RGBDCLIP(nn.Module):
    """Contrastive RGB / depth encoders with an ITM head; as a classifier, retrieval over a gallery.

    With query "rgb" forward takes RGB (N,3,S,S) and scores a gallery of depth maps (G,1,S,S), with
    query "depth" the other way round; logits (N,G) in both cases.
    """

    task = "classification"
    default_suite = "rgbd-clip"  # both retrieval directions on the synthetic RGB-D test split

    def __init__(self, input_size: int = 64, widths: tuple[int, ...] = (32, 64, 128),
                 embed_channels: int = 32, fusion_width: int = 64, fusion_heads: int = 4, fusion_layers: int = 2):
        super().__init__()
        stride = 2 ** len(widths)
        if input_size % stride:
            raise ValueError(f"input_size {input_size} is not a multiple of the encoders' stride {stride}")
        self.query, self.input_size = "rgb", input_size
        tokens = (input_size // stride) ** 2
        self.embed_dim = embed_channels * tokens
        self.rgb_encoder = ConvEncoder(3, widths)
        self.depth_encoder = ConvEncoder(1, widths)
        self.rgb_proj = nn.Conv2d(widths[-1], embed_channels, 1)
        self.depth_proj = nn.Conv2d(widths[-1], embed_channels, 1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.matching = MatchingHead(widths[-1], tokens, fusion_width, fusion_heads, fusion_layers)
        self.register_buffer("gallery", torch.zeros(0), persistent=False)
        self.register_buffer("gallery_embeddings", torch.zeros(0), persistent=False)

    def scale(self) -> Tensor:
        """exp(s), clamped to <= 100 as in CLIP."""
        return self.logit_scale.exp().clamp(max=100.0)

    def rgb_features(self, rgb: Tensor) -> Tensor:
        """RGB (N,3,S,S) in [0,1] -> feature map (N,C,S/2^k,S/2^k), k = len(widths)."""
        return self.rgb_encoder(normalize(rgb, IMAGENET_MEAN, IMAGENET_STD))

    def depth_features(self, depth: Tensor) -> Tensor:
        """Depth (N,1,S,S) in [0,1] -> feature map (N,C,S/2^k,S/2^k), k = len(widths)."""
        return self.depth_encoder(normalize(depth, DEPTH_MEAN, DEPTH_STD))

    def embed_rgb(self, rgb_map: Tensor) -> Tensor:
        """Feature map (N,C,h,w) -> unit embedding (N,D): the per-position projection, flattened."""
        return F.normalize(self.rgb_proj(rgb_map).flatten(1), dim=-1)

    def embed_depth(self, depth_map: Tensor) -> Tensor:
        return F.normalize(self.depth_proj(depth_map).flatten(1), dim=-1)

    def encode_rgb(self, rgb: Tensor) -> Tensor:
        """RGB (N,3,S,S) in [0,1] -> unit embedding (N,D)."""
        return self.embed_rgb(self.rgb_features(rgb))

    def encode_depth(self, depth: Tensor) -> Tensor:
        """Depth (N,1,S,S) in [0,1] -> unit embedding (N,D)."""
        return self.embed_depth(self.depth_features(depth))

    def itm_logits(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """(N,2) matched-pair logits of RGB i with depth i; index 1 = "matched"."""
        return self.matching(self.rgb_features(rgb), self.depth_features(depth))

    def encode_query(self, x: Tensor) -> Tensor:
        return self.encode_rgb(x) if self.query == "rgb" else self.encode_depth(x)

    def encode_gallery(self, g: Tensor) -> Tensor:
        return self.encode_depth(g) if self.query == "rgb" else self.encode_rgb(g)

    @torch.no_grad()
    def set_gallery(self, gallery: Tensor, query: str = "rgb") -> None:
        """Queries of modality ``query`` will score ``gallery`` (G,C,S,S) in [0,1], images of the other
        modality, encoded here (call in eval mode)."""
        if query not in QUERIES:
            raise ValueError(f"query must be one of {QUERIES}, got {query!r}")
        channels = 1 if query == "rgb" else 3
        if gallery.ndim != 4 or gallery.shape[1] != channels:
            raise ValueError(f"a gallery for {query} queries holds (G,{channels},S,S) images, got {tuple(gallery.shape)}")
        self.query = query
        self.gallery = gallery.to(self.logit_scale)
        self.gallery_embeddings = self.encode_gallery(self.gallery)

    @torch.no_grad()
    def matching_accuracy(self, x: Tensor, target: Tensor, logits: Tensor) -> Tensor:
        """(N,) ITM accuracy of each query x_i, in {0, 1/2, 1}: the mean of "matched" on its own partner
        g_{target_i} and "not matched" on its hardest ITC negative argmax_{j != target_i} logits_ij."""
        negative = logits.scatter(1, target[:, None], float("-inf")).argmax(1)
        features = self.rgb_features if self.query == "rgb" else self.depth_features
        other = self.depth_features if self.query == "rgb" else self.rgb_features
        q = features(x)
        pairs = [(q, other(self.gallery[target])), (q, other(self.gallery[negative]))]
        if self.query == "depth":
            pairs = [(g, d) for d, g in pairs]
        positive, hard = (self.matching(r, d).argmax(1) for r, d in pairs)
        return ((positive == 1).to(x.dtype) + (hard == 0).to(x.dtype)) / 2

    def forward(self, x: Tensor) -> Tensor:
        """Query (N,C,S,S) in [0,1] -> (N,G) logits exp(s) * e(x) @ gallery_embeddings^T."""
        if not self.gallery_embeddings.numel():
            raise RuntimeError("no gallery: call set_gallery(gallery) before retrieval")
        q = self.encode_query(x)
        return self.scale() * q @ self.gallery_embeddings.T

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a state_dict file (weights_only, strict); errors name the file. Re-encodes a set gallery."""
        sd = load_state_dict_file(path)
        try:
            self.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: does not match {type(self).__name__} ({e})") from e
        if self.gallery.numel():
            self.set_gallery(self.gallery, self.query)
