"""D3Net: Deep Depth-Depurator Network for RGB-D salient object detection.

D.-P. Fan, Z. Lin, Z. Zhang, M. Zhu, M.-M. Cheng, "Rethinking RGB-D Salient Object Detection: Models,
Data Sets, and Large-Scale Benchmarks", IEEE TNNLS 2021 (official code: DengPingFan/D3NetBenchmark).

Three sub-networks share one design (a VGG-16 encoder with an FPN-style top-down decoder) and differ
only in their input: RgbNet sees the ImageNet-normalised RGB image, RgbdNet the normalised RGB image
with the raw [0,1] depth appended as a 4th channel, DepthNet the raw depth replicated to 3 channels.
At test time the depth depurator unit (DDU) keeps the depth-aware map only when the depth is reliable:

    S = S_rgbd  if  mean |S_rgbd - S_depth| < 0.15  else  S_rgb,

where the maps are the official uint8 outputs, floor(255 * sigmoid), divided by 255.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import (IMAGENET_MEAN, IMAGENET_STD, ModelWrapper, SaliencyModel, normalize, straight_through,
                         strip_prefix)
from models.preprocessing import cv2_linear_uint8_nearest_depth

VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_DEPTHS = (2, 2, 3, 3, 3)
DDU_THRESHOLD = 0.15
SUBNET_FILES = {"RgbNet": "rgb_net", "RgbdNet": "rgbd_net", "DepthNet": "depth_net"}

# The official training script stores its best metric as a numpy array next to the weights; these
# globals only rebuild plain arrays, under the names numpy 1.x and 2.x write into pickles.
_numpy_reconstruct = np.zeros(0).__reduce__()[0]
_NUMPY_ARRAY_GLOBALS = [
    (np.ndarray, "numpy.ndarray"),
    (np.dtype, "numpy.dtype"),
    (_numpy_reconstruct, "numpy.core.multiarray._reconstruct"),
    (_numpy_reconstruct, "numpy._core.multiarray._reconstruct"),
    *(type(np.dtype(kind)) for kind in (np.float64, np.float32, np.int64)),
]


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


class VGGEncoder(nn.Module):
    """VGG-16 features in five blocks ``conv1..conv5``; blocks 2-5 start with a 2x2 max-pool."""

    def __init__(self, in_channels: int, widths: Sequence[int] = VGG16_WIDTHS) -> None:
        super().__init__()
        previous = in_channels
        for block, (width, depth) in enumerate(zip(widths, VGG16_DEPTHS), start=1):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if block > 1:
                layers[f"pool{block - 1}"] = nn.MaxPool2d(2, stride=2)
            for i in range(1, depth + 1):
                layers[f"conv{block}_{i}"] = _conv3x3(previous, width)
                layers[f"relu{block}_{i}"] = nn.ReLU(inplace=True)
                previous = width
            self.add_module(f"conv{block}", nn.Sequential(layers))

    def forward(self, x: Tensor) -> list[Tensor]:
        """The five block outputs, from stride 1 to stride 16."""
        features = []
        for block in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = block(x)
            features.append(x)
        return features


class TopDownBlock(nn.Module):
    """One FPN decoder step: upsample (bilinear, align_corners=True) to the lateral feature,
    concatenate with its 1x1-reduced version, fuse with two 3x3 convs."""

    def __init__(self, width: int, lateral_channels: int) -> None:
        super().__init__()
        self.reduce_conv = nn.Sequential(
            nn.Conv2d(lateral_channels, width, kernel_size=1), nn.ReLU(inplace=True)
        )
        self.decoder = nn.Sequential(
            _conv3x3(2 * width, width), nn.ReLU(inplace=True), _conv3x3(width, width), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor, lateral: Tensor) -> Tensor:
        x = F.interpolate(x, size=lateral.shape[2:], mode="bilinear", align_corners=True)
        return self.decoder(torch.cat((x, self.reduce_conv(lateral)), dim=1))


class FPNStream(nn.Module):
    """Encoder, a top layer (2x2 avg-pool + two 3x3 convs) on conv5, and five top-down blocks."""

    def __init__(self, in_channels: int, widths: Sequence[int], decoder_width: int) -> None:
        super().__init__()
        self.backbone = VGGEncoder(in_channels, widths)
        self.toplayer = nn.Sequential(
            nn.AvgPool2d(2, stride=2),
            _conv3x3(widths[-1], decoder_width),
            nn.ReLU(inplace=True),
            _conv3x3(decoder_width, decoder_width),
            nn.ReLU(inplace=True),
        )
        self.decoders = nn.ModuleList(TopDownBlock(decoder_width, width) for width in widths)

    def forward(self, x: Tensor) -> Tensor:
        laterals = self.backbone(x)
        x = self.toplayer(laterals[-1])
        for decoder, lateral in reversed(list(zip(self.decoders, laterals))):
            x = decoder(x, lateral)
        return x


class PredictionHead(nn.Module):
    """Two 3x3 convs and a 1x1 conv to one channel; returns logits (the official module ends in a
    sigmoid, applied here by the caller)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.enlayer = nn.Sequential(
            _conv3x3(width, width), nn.ReLU(inplace=True), _conv3x3(width, width), nn.ReLU(inplace=True)
        )
        self.outlayer = nn.Sequential(nn.Conv2d(width, 1, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.outlayer(self.enlayer(x))


class SaliencySubNet(nn.Module):
    """One D3Net sub-network (RgbNet, RgbdNet or DepthNet) on an already pre-processed input."""

    def __init__(
        self, in_channels: int, widths: Sequence[int] = VGG16_WIDTHS, decoder_width: int = 32
    ) -> None:
        super().__init__()
        self.main_stream = FPNStream(in_channels, widths, decoder_width)
        self.pred_layer = PredictionHead(decoder_width)

    def forward(self, x: Tensor) -> Tensor:
        return self.pred_layer(self.main_stream(x))


class _ContiguousGradient(torch.autograd.Function):
    """Identity whose backward returns the gradient NCHW-contiguous, whatever layout the network left
    it in (channel slices of a concatenation, NHWC convolutions), so callers can ``.view`` it."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def _init_conv_weights(module: nn.Module) -> None:
    """Kaiming-normal weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases: the official initialisation
    of the decoder, applied to the encoder too since no ImageNet VGG weights are loaded here."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_normal_(conv.weight)
            bound = 1.0 / math.sqrt(conv.weight[0].numel())
            nn.init.uniform_(conv.bias, -bound, bound)


def _load_subnet_file(path: Path) -> dict[str, Tensor]:
    """Read one official ``{'model': state_dict, ...}`` file with ``weights_only=True``."""
    if not path.is_file():
        raise FileNotFoundError(f"D3Net checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a loadable weights-only PyTorch checkpoint ({e})") from e
    return _unwrap_state_dict(obj, str(path))


def _unwrap_state_dict(obj: object, source: str) -> dict[str, Tensor]:
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{source}: expected a state_dict or {{'model': state_dict, ...}}")
    return strip_prefix(obj)


def _resized_probability(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Sigmoid, then bilinear resize (half-pixel centres, as cv2.INTER_LINEAR) when the size differs."""
    prob = logits.sigmoid()
    if tuple(size) == tuple(prob.shape[2:]):
        return prob
    return F.interpolate(prob, size=size, mode="bilinear", align_corners=False)


def _uint8_levels(prob: Tensor) -> Tensor:
    """The official ``(p * 255).astype(np.uint8)``, i.e. truncation, kept as floats."""
    return torch.floor(prob * 255)


class D3Net(SaliencyModel):
    """D3Net: RgbNet, RgbdNet and DepthNet, with the depth depurator unit choosing per image.

    ``backbone_widths`` (VGG-16 block widths) and ``decoder_width`` default to the official 64..512
    and 32; smaller values give the same architecture at a fraction of the cost. ``channels_last``
    keeps weights and activations in NHWC memory layout: equal up to floating-point rounding, and much
    faster on CPU for narrow layers.
    """

    input_loader = staticmethod(cv2_linear_uint8_nearest_depth)
    takes_gt_sizes = True  # the official eval runs the DDU on the maps at each image's GT size

    def __init__(
        self,
        input_size: int = 224,
        backbone_widths: Sequence[int] = VGG16_WIDTHS,
        decoder_width: int = 32,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if len(backbone_widths) != len(VGG16_DEPTHS):
            raise ValueError(f"backbone_widths needs {len(VGG16_DEPTHS)} entries, got {len(backbone_widths)}")
        self.input_size = input_size
        self.rgb_net = SaliencySubNet(3, backbone_widths, decoder_width)
        self.rgbd_net = SaliencySubNet(4, backbone_widths, decoder_width)
        self.depth_net = SaliencySubNet(3, backbone_widths, decoder_width)
        _init_conv_weights(self)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _subnet_inputs(self, rgb: Tensor, depth: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Official test-time inputs: ImageNet-normalised RGB; normalised RGB + raw depth; raw depth x3."""
        rgb = normalize(_ContiguousGradient.apply(rgb), IMAGENET_MEAN, IMAGENET_STD)
        depth = _ContiguousGradient.apply(depth)
        return rgb, torch.cat((rgb, depth), dim=1), depth.expand(-1, 3, -1, -1)

    def training_outputs(self, rgb: Tensor, depth: Tensor) -> list[Tensor]:
        """Logits of RgbNet, RgbdNet and DepthNet, each supervised by the GT in training."""
        rgb_in, rgbd_in, depth_in = self._subnet_inputs(rgb, depth)
        return [self.rgb_net(rgb_in), self.rgbd_net(rgbd_in), self.depth_net(depth_in)]

    def forward(
        self, rgb: Tensor, depth: Tensor, gt_sizes: Sequence[tuple[int, int]] | None = None
    ) -> Tensor:
        """Logits of the sub-network the DDU selects for each image: RgbdNet's or RgbNet's.

        The official eval applies the DDU to the maps resized to each image's GT size; pass those sizes
        as ``gt_sizes`` (one (H, W) per image) to reproduce it. Without them it decides at the network
        resolution.
        """
        rgb_in, rgbd_in, depth_in = self._subnet_inputs(rgb, depth)
        rgb_logits = self.rgb_net(rgb_in)
        rgbd_logits = self.rgbd_net(rgbd_in)
        with torch.no_grad():
            depth_logits = self.depth_net(depth_in)
            use_rgbd = self.depth_depurator(rgbd_logits.detach(), depth_logits, gt_sizes)
        return torch.where(use_rgbd.view(-1, 1, 1, 1), rgbd_logits, rgb_logits)

    def depth_depurator(
        self, rgbd_logits: Tensor, depth_logits: Tensor, sizes: Sequence[tuple[int, int]] | None = None
    ) -> Tensor:
        """(N,) bool, True where mean |S_rgbd - S_depth| < 0.15, with image i's maps taken as the official
        uint8 outputs at ``sizes[i]`` (default: the network resolution), each divided by 255 in float64.
        Images of one size are decided together."""
        n = rgbd_logits.shape[0]
        sizes = [tuple(rgbd_logits.shape[2:])] * n if sizes is None else [tuple(map(int, s)) for s in sizes]
        if len(sizes) != n:
            raise ValueError(f"gt_sizes: {len(sizes)} sizes for a batch of {n} images")
        use_rgbd = torch.empty(n, dtype=torch.bool, device=rgbd_logits.device)
        for size in set(sizes):
            rows = [i for i, s in enumerate(sizes) if s == size]
            rgbd_map, depth_map = (
                _uint8_levels(_resized_probability(x[rows], size)).double() / 255
                for x in (rgbd_logits, depth_logits)
            )
            use_rgbd[rows] = (rgbd_map - depth_map).abs().mean(dim=(1, 2, 3)) < DDU_THRESHOLD
        return use_rgbd

    def adaptive_view(self) -> D3NetSoftGate:
        """What an adaptive attacker differentiates: the DDU with a soft gate backward (BPDA)."""
        return D3NetSoftGate(self)

    def postprocess(self, logits: Tensor, size: tuple[int, int], quantize: bool = True) -> Tensor:
        """Official output: sigmoid, bilinear resize to the GT size (cv2.INTER_LINEAR), then the uint8
        map floor(255 p) saved as PNG, returned here divided by 255. ``quantize=False`` skips the uint8
        step (differentiable)."""
        prob = _resized_probability(logits, size)
        return _uint8_levels(prob) / 255 if quantize else prob

    def load_official_checkpoint(self, src: str | Path | Mapping[str, Mapping]) -> None:
        """Strictly load the three official files: ``src`` is a folder holding RgbNet.pth, RgbdNet.pth
        and DepthNet.pth (each ``{'model': state_dict, ...}``) or a dict with those names as keys
        (plain or wrapped state_dicts)."""
        if isinstance(src, (str, Path)):
            folder = Path(src)
            if not folder.is_dir():
                raise NotADirectoryError(f"D3Net checkpoint folder not found: {folder}")
            sources = {name: str(folder / f"{name}.pth") for name in SUBNET_FILES}
            state_dicts = {name: _load_subnet_file(Path(path)) for name, path in sources.items()}
        else:
            missing = [name for name in SUBNET_FILES if name not in src]
            if missing:
                raise KeyError(f"D3Net checkpoint dict lacks {missing}; expected keys {list(SUBNET_FILES)}")
            sources = {name: f"checkpoint[{name!r}]" for name in SUBNET_FILES}
            state_dicts = {name: _unwrap_state_dict(src[name], sources[name]) for name in SUBNET_FILES}
        for name, attribute in SUBNET_FILES.items():
            try:
                getattr(self, attribute).load_state_dict(state_dicts[name], strict=True)
            except RuntimeError as e:
                raise RuntimeError(f"{sources[name]}: does not match D3Net {name} ({e})") from e


class D3NetSoftGate(ModelWrapper):
    """D3Net as an adaptive attacker sees it. The hard DDU gives RgbNet's map a zero gradient with respect
    to depth wherever it keeps RgbNet, so a depth attack that is oblivious to the gate stalls. Forward:
    D3Net's exact output. Backward (BPDA, Athalye et al. 2018, with a differentiable approximation):
    the gradient of a soft gate,

        w = sigmoid((0.15 - mean |sigmoid(z_rgbd) - sigmoid(z_depth)|) / T),  z = w z_rgbd + (1 - w) z_rgb,

    at network resolution, so the attack also reaches DepthNet and the branch choice itself.
    """

    def __init__(self, model: D3Net, temperature: float = 0.02):
        super().__init__(model)
        self.temperature = temperature

    def forward(self, rgb: Tensor, depth: Tensor, gt_sizes: Sequence[tuple[int, int]] | None = None) -> Tensor:
        m = self.model
        rgb_in, rgbd_in, depth_in = m._subnet_inputs(rgb, depth)
        rgb_logits, rgbd_logits, depth_logits = m.rgb_net(rgb_in), m.rgbd_net(rgbd_in), m.depth_net(depth_in)
        with torch.no_grad():
            use_rgbd = m.depth_depurator(rgbd_logits, depth_logits, gt_sizes).view(-1, 1, 1, 1)
        hard = torch.where(use_rgbd, rgbd_logits, rgb_logits)
        gap = (rgbd_logits.sigmoid() - depth_logits.sigmoid()).abs().mean(dim=(1, 2, 3))
        w = torch.sigmoid((DDU_THRESHOLD - gap) / self.temperature).view(-1, 1, 1, 1)
        soft = w * rgbd_logits + (1 - w) * rgb_logits
        return straight_through(hard, soft)


def d3net_tiny(input_size: int = 128) -> D3Net:
    """D3Net with narrow VGG widths and NHWC layout for quick CPU training (same code as the official
    configuration)."""
    return D3Net(
        input_size=input_size, backbone_widths=(8, 16, 32, 64, 64), decoder_width=8, channels_last=True
    )
