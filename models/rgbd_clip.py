"""RGB-D CLIP: RGB and depth as two modalities, aligned contrastively, with an image-depth matching head.

Two CNN encoders map an RGB image and a depth map to unit embeddings e_rgb, e_depth in R^D, trained with
CLIP's symmetric contrastive loss (Radford et al. 2021, arXiv:2103.00020) on

    S_ij = exp(s) * <e_rgb_i, e_depth_j>,  exp(s) <= 100,

and an image-depth matching (ITM) head over both encoders' feature tokens, as ALBEF's image-text
matching (Li et al. 2021, "Align before Fuse", arXiv:2107.07651): a [CLS] token and the RGB tokens
self-attend, cross-attend to the depth tokens, and the [CLS] output is classified unmatched / matched.

For the benchmark, retrieval is classification over a gallery: with ``query="rgb"`` the gallery holds
depth maps g_1..g_G and ``forward(x) = exp(s) * e_rgb(x) @ [e_depth(g_1) .. e_depth(g_G)]^T`` (N,G);
``query="depth"`` swaps the roles. Inputs are in [0,1] at ``input_size``; normalisation is inside.
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


class FusionLayer(nn.Module):
    """One pre-LayerNorm layer of ALBEF's multimodal encoder: x += SelfAttn(x); x += CrossAttn(x, context);
    x += MLP(x)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_context, self.norm_mlp = (nn.LayerNorm(width) for _ in range(4))
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        c = self.norm_context(context)
        x = x + self.cross_attn(self.norm_cross(x), c, c, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class MatchingHead(nn.Module):
    """ITM head: feature maps of an RGB image and a depth map -> (N,2) logits, index 1 = "matched".

    Both maps become tokens with the same learned position embedding, so a token can find the depth
    token at its own position; the [CLS] token's fused output is classified.
    """

    def __init__(self, rgb_channels: int, depth_channels: int, tokens: int, width: int, heads: int, layers: int):
        super().__init__()
        self.rgb_in = nn.Linear(rgb_channels, width)
        self.depth_in = nn.Linear(depth_channels, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(0.02 * torch.randn(1, tokens, width))
        self.layers = nn.ModuleList(FusionLayer(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, 2)

    def forward(self, rgb_map: Tensor, depth_map: Tensor) -> Tensor:
        rgb = self.rgb_in(rgb_map.flatten(2).transpose(1, 2)) + self.position
        depth = self.depth_in(depth_map.flatten(2).transpose(1, 2)) + self.position
        x = torch.cat([self.cls.expand(len(rgb), -1, -1), rgb], 1)
        for layer in self.layers:
            x = layer(x, depth)
        return self.classifier(self.norm(x[:, 0]))


class RGBDCLIP(nn.Module):
    """Contrastive RGB / depth encoders with an ITM head; as a classifier, retrieval over a gallery.

    query="rgb": forward takes RGB (N,3,S,S) and scores a gallery of depth maps (G,1,S,S), and
    query="depth" the other way round; logits (N,G) in both cases.
    """

    task = "classification"

    def __init__(self, query: str = "rgb", input_size: int = 64, embed_dim: int = 128,
                 widths: tuple[int, ...] = (32, 64, 128, 256), fusion_width: int = 128, fusion_heads: int = 4,
                 fusion_layers: int = 2):
        super().__init__()
        if query not in QUERIES:
            raise ValueError(f"query must be one of {QUERIES}, got {query!r}")
        stride = 2 ** len(widths)
        if input_size % stride:
            raise ValueError(f"input_size {input_size} is not a multiple of the encoders' stride {stride}")
        self.query, self.input_size = query, input_size
        self.rgb_encoder = ConvEncoder(3, widths)
        self.depth_encoder = ConvEncoder(1, widths)
        tokens = (input_size // stride) ** 2
        self.rgb_proj = nn.Conv2d(widths[-1], embed_dim, 1)
        self.depth_proj = nn.Conv2d(widths[-1], embed_dim, 1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.matching = MatchingHead(widths[-1], widths[-1], tokens, fusion_width,
                                     fusion_heads, fusion_layers)
        self.register_buffer("gallery", torch.zeros(0), persistent=False)
        self.register_buffer("gallery_embeddings", torch.zeros(0), persistent=False)

    def scale(self) -> Tensor:
        """exp(s), clamped to <= 100 as in CLIP."""
        return self.logit_scale.exp().clamp(max=100.0)

    def rgb_features(self, rgb: Tensor) -> Tensor:
        """RGB (N,3,S,S) in [0,1] -> feature map (N,C,S/16,S/16)."""
        return self.rgb_encoder(normalize(rgb, IMAGENET_MEAN, IMAGENET_STD))

    def depth_features(self, depth: Tensor) -> Tensor:
        """Depth (N,1,S,S) in [0,1] -> feature map (N,C,S/16,S/16)."""
        return self.depth_encoder(normalize(depth, DEPTH_MEAN, DEPTH_STD))

    def embed_rgb(self, rgb_map: Tensor) -> Tensor:
        """Feature map -> unit embedding (N,D): a projection of the whole flattened map, so the embedding
        keeps where things are (what pairs an RGB image with its depth map)."""
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
    def set_gallery(self, gallery: Tensor) -> None:
        """Encode the gallery (G,C,S,S) in [0,1] with the other modality's encoder (call in eval mode)."""
        self.gallery = gallery.to(self.logit_scale)
        self.gallery_embeddings = self.encode_gallery(self.gallery)

    def forward(self, x: Tensor) -> Tensor:
        """Query (N,C,S,S) in [0,1] -> (N,G) logits exp(s) * e(x) @ gallery_embeddings^T."""
        if not self.gallery_embeddings.numel():
            raise RuntimeError("no gallery: call set_gallery(gallery) before retrieval")
        q = self.encode_query(x)
        return self.scale().to(q.dtype) * q @ self.gallery_embeddings.to(q.dtype).T

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a state_dict file (weights_only, strict); errors name the file. Re-encodes a set gallery."""
        sd = load_state_dict_file(path)
        try:
            self.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: does not match {type(self).__name__} ({e})") from e
        if self.gallery.numel():
            self.set_gallery(self.gallery)
