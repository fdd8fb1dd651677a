"""JL-DCF: Joint Learning and Densely-Cooperative Fusion for RGB-D salient object detection.

K. Fu, D.-P. Fan, G.-P. Ji, Q. Zhao, "JL-DCF: Joint Learning and Densely-Cooperative Fusion Framework
for RGB-D Salient Object Detection", CVPR 2020; extended in TPAMI 2021.

One Siamese backbone sees the RGB image and the depth map (replicated to three channels) stacked on
the batch axis (joint learning, JL). Six side outputs are compressed to ``k`` channels, fused across
modalities by cross-modal fusion (CM, eq. 2 of the paper)

    CM(X_rgb, X_d) = X_rgb + X_d + X_rgb * X_d,

and decoded coarse-to-fine by densely-cooperative fusion (DCF): every feature-aggregation (FA) module
receives the CM feature of its level plus *all* previous FA outputs, each lifted to its resolution by a
learned transposed convolution. A 1x1 score layer on the deepest JL feature gives the coarse maps
(supervised in training for both modalities); a 1x1 score layer on the last FA output gives the final map.

The state_dict layout matches the official PyTorch release, so its checkpoints load strictly for the
``resnet101``, ``resnet50``, ``vgg16`` and ``densenet161`` backbones. Unlike the release, any batch
size works: ``N`` RGB images and ``N`` depth maps travel as one ``2N`` batch and are split afterwards.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import IMAGENET_MEAN, IMAGENET_STD, SaliencyModel, normalize
from models.preprocessing import cv2_linear_float

__all__ = ["JLDCF", "jldcf_tiny", "ResNetBackbone", "VGGBackbone", "DenseNetBackbone", "BACKBONES"]

COMPRESSION_WIDTHS = (128, 128, 256, 256, 512, 512)
"""Hidden widths of the six official compression (CP) heads, shallowest level first."""

TOTAL_STRIDE = 16
"""Output stride of every JL-DCF backbone; input sides must be multiples of it."""


def _conv_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel - 1) // 2
    return [nn.Conv2d(in_ch, out_ch, kernel, 1, padding, dilation), nn.ReLU(inplace=True)]


class Bottleneck(nn.Module):
    """ResNet bottleneck as in JL-DCF (Caffe/DeepLab style): the stride sits on the first 1x1 conv,
    the 3x3 conv may be dilated (padding = dilation)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNetBackbone(nn.Module):
    """JL-DCF's ResNet: 7x7/2 stem, ceil-mode 3x3/2 max-pool, stages of strides 1, 2, 2 and 1, the last
    one dilated by 2 (output stride 16). Returns the stem activation and the four stage outputs.

    ``width`` scales the stem and every stage (64 for the official networks); ``blocks`` gives the
    number of bottlenecks per stage ((3, 4, 6, 3) ResNet-50, (3, 4, 23, 3) ResNet-101).
    """

    def __init__(self, blocks: Sequence[int], width: int = 64) -> None:
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must give four positive stage depths, got {tuple(blocks)}")
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self._in_ch = width
        self.layer1 = self._make_stage(width, blocks[0], stride=1, dilation=1)
        self.layer2 = self._make_stage(2 * width, blocks[1], stride=2, dilation=1)
        self.layer3 = self._make_stage(4 * width, blocks[2], stride=2, dilation=1)
        self.layer4 = self._make_stage(8 * width, blocks[3], stride=1, dilation=2)
        e = Bottleneck.expansion
        self.out_channels: tuple[int, ...] = (width, e * width, 2 * e * width, 4 * e * width, 8 * e * width)

    def _make_stage(self, planes: int, depth: int, stride: int, dilation: int) -> nn.Sequential:
        # The first block of every stage changes the width (in != planes * 4), so it always projects.
        out_ch = planes * Bottleneck.expansion
        projection = nn.Sequential(nn.Conv2d(self._in_ch, out_ch, 1, stride, bias=False),
                                   nn.BatchNorm2d(out_ch))
        stage = [Bottleneck(self._in_ch, planes, stride, dilation, projection)]
        stage += [Bottleneck(out_ch, planes, 1, dilation) for _ in range(depth - 1)]
        self._in_ch = out_ch
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(stem))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [stem, c2, c3, c4, c5]


class VGGBackbone(nn.Module):
    """VGG-16 conv body as a flat ``layers`` list (torchvision indices), with a final 3x3/1 max-pool
    instead of the fifth 2x2/2 one. Returns six maps: the ReLU output of each of the five conv groups
    (strides 1, 2, 4, 8, 16) and the final pooled map (stride 16)."""

    GROUPS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        taps: list[int] = []
        in_ch = 3
        for g, widths in enumerate(self.GROUPS):
            if g > 0:
                layers.append(nn.MaxPool2d(2, 2))
            for w in widths:
                layers += _conv_relu(in_ch, w, 3)
                in_ch = w
            taps.append(len(layers) - 1)
        layers.append(nn.MaxPool2d(3, 1, 1))
        taps.append(len(layers) - 1)
        self.layers = nn.ModuleList(layers)
        self.taps = frozenset(taps)
        self.out_channels: tuple[int, ...] = tuple(g[-1] for g in self.GROUPS) + (in_ch,)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs


class DenseLayer(nn.Sequential):
    """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv; the ``growth`` new channels are appended to the input."""

    def __init__(self, in_ch: int, growth: int, bottleneck_factor: int, dilation: int) -> None:
        mid = bottleneck_factor * growth
        super().__init__(OrderedDict([
            ("norm1", nn.BatchNorm2d(in_ch)), ("relu1", nn.ReLU(inplace=True)),
            ("conv1", nn.Conv2d(in_ch, mid, 1, bias=False)),
            ("norm2", nn.BatchNorm2d(mid)), ("relu2", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(mid, growth, 3, 1, dilation, dilation, bias=False)),
        ]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, super().forward(x)], 1)


class DenseNetBackbone(nn.Module):
    """DenseNet-161 as modified by JL-DCF: the third transition keeps the resolution (3x3/1 average
    pool, zero padding counted) and the fourth dense block is dilated by 2 (output stride 16).
    Returns the stem activation, the outputs of dense blocks 1-3 and the final BatchNorm output.
    ``classifier`` is unused; it exists only because the released checkpoints contain it."""

    def __init__(self, growth: int = 48, block_depths: Sequence[int] = (6, 12, 36, 24), stem_width: int = 96,
                 bottleneck_factor: int = 4, num_classes: int = 1000) -> None:
        super().__init__()
        modules: OrderedDict[str, nn.Module] = OrderedDict([
            ("conv0", nn.Conv2d(3, stem_width, 7, 2, 3, bias=False)),
            ("norm0", nn.BatchNorm2d(stem_width)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, 2, 1)),
        ])
        channels = [stem_width]
        ch = stem_width
        last = len(block_depths) - 1
        for b, depth in enumerate(block_depths):
            dilation = 2 if b == last else 1
            modules[f"denseblock{b + 1}"] = nn.Sequential(OrderedDict(
                (f"denselayer{i + 1}", DenseLayer(ch + i * growth, growth, bottleneck_factor, dilation))
                for i in range(depth)))
            ch += depth * growth
            channels.append(ch)
            if b != last:
                pool = nn.AvgPool2d(2, 2) if b < 2 else nn.AvgPool2d(3, 1, 1)
                modules[f"transition{b + 1}"] = nn.Sequential(OrderedDict([
                    ("norm", nn.BatchNorm2d(ch)), ("relu", nn.ReLU(inplace=True)),
                    ("conv", nn.Conv2d(ch, ch // 2, 1, bias=False)), ("pool", pool),
                ]))
                ch //= 2
        modules["norm5"] = nn.BatchNorm2d(ch)
        self.features = nn.Sequential(modules)
        self.classifier = nn.Linear(ch, num_classes)
        self.out_channels: tuple[int, ...] = tuple(channels)
        self._tap_names = frozenset({"relu0", "denseblock1", "denseblock2", "denseblock3", "norm5"})

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for name, module in self.features.named_children():
            x = module(x)
            if name in self._tap_names:
                outs.append(x)
        return outs


BACKBONES = ("resnet101", "resnet50", "vgg16", "densenet161")


def _build_backbone(name: str) -> nn.Module:
    if name == "resnet101":
        return ResNetBackbone((3, 4, 23, 3))
    if name == "resnet50":
        return ResNetBackbone((3, 4, 6, 3))
    if name == "vgg16":
        return VGGBackbone()
    if name == "densenet161":
        return DenseNetBackbone()
    raise ValueError(f"unknown JL-DCF backbone {name!r}; choose one of {BACKBONES}")


class JointLearningEncoder(nn.Module):
    """Shared backbone plus one compression (CP) head per level, each reducing a side output to ``k``
    channels. Backbones with five side outputs (ResNet, DenseNet) get an extra full-resolution tap from
    two 3x3 convs on the input (``vgg_conv1``), so there are always six levels, strides 1, 2, 4, 8, 16, 16.
    """

    def __init__(self, backbone: nn.Module, k: int, compression_widths: Sequence[int],
                 full_res_width: int) -> None:
        super().__init__()
        self.backbone = backbone
        channels = tuple(backbone.out_channels)
        if len(channels) == 5:
            self.vgg_conv1 = nn.Sequential(*_conv_relu(3, full_res_width, 3),
                                           *_conv_relu(full_res_width, full_res_width, 3))
            channels = (full_res_width,) + channels
        else:
            self.vgg_conv1 = None
        if len(channels) != 6 or len(compression_widths) != 6:
            raise ValueError("JL-DCF needs six feature levels and six compression widths")
        head_shapes = ((3, 1), (3, 1), (5, 1), (5, 1), (5, 1), (7, 2))  # (kernel, dilation) per level
        self.CP = nn.ModuleList(
            nn.Sequential(*_conv_relu(c, w, kernel, dilation), *_conv_relu(w, w, kernel, dilation),
                          *_conv_relu(w, k, 3))
            for c, w, (kernel, dilation) in zip(channels, compression_widths, head_shapes))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.backbone(x)
        if self.vgg_conv1 is not None:
            features = [self.vgg_conv1(x)] + features
        return [head(f) for head, f in zip(self.CP, features)]


class FeatureAggregation(nn.Module):
    """FA module: sums its inputs, then an Inception-like block of four ``k/4``-channel branches
    (1x1; 1x1-3x3; 1x1-5x5; 3x3 max-pool-1x1) concatenated back to ``k`` channels."""

    def __init__(self, k: int) -> None:
        super().__init__()
        q = k // 4
        self.conv_branch1 = nn.Sequential(*_conv_relu(k, q, 1))
        self.conv_branch2 = nn.Sequential(*_conv_relu(k, k // 2, 1), *_conv_relu(k // 2, q, 3))
        self.conv_branch3 = nn.Sequential(*_conv_relu(k, q, 1), *_conv_relu(q, q, 5))
        self.conv_branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_relu(k, q, 1))

    def forward(self, cross_modal: Tensor, lifted: Sequence[Tensor]) -> Tensor:
        x = cross_modal
        for feature in lifted:
            x = x + feature
        branches = (self.conv_branch1, self.conv_branch2, self.conv_branch3, self.conv_branch4)
        return torch.cat([branch(x) for branch in branches], 1)


class ScoreLayer(nn.Module):
    """1x1 convolution to a one-channel saliency logit map."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(k, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(x)


class JLDCF(SaliencyModel):
    """JL-DCF (Fu et al., CVPR 2020). ``forward`` returns the final map's logits; the coarse JL maps of
    both modalities are exposed through ``training_outputs``.

    Args:
        backbone: "resnet101", "resnet50", "vgg16", "densenet161", or a backbone module with an
            ``out_channels`` tuple (five or six levels, output strides as described above).
        input_size: network resolution S (320 for the official models; a multiple of 16).
        k: width of the compressed features and of the decoder (64 officially, a multiple of 4).
        compression_widths: hidden widths of the six CP heads.
        full_res_width: width of the extra full-resolution tap (ResNet/DenseNet backbones only).
        channels_last: run the network on NHWC tensors; much faster on CPU for thin layers, equal to
            the default layout up to floating-point rounding.
    """

    input_loader = staticmethod(cv2_linear_float)

    def __init__(self, backbone: str | nn.Module = "resnet101", *, input_size: int = 320, k: int = 64,
                 compression_widths: Sequence[int] = COMPRESSION_WIDTHS, full_res_width: int = 64,
                 channels_last: bool = False) -> None:
        super().__init__()
        if input_size % TOTAL_STRIDE != 0:
            raise ValueError(f"input_size must be a multiple of {TOTAL_STRIDE}, got {input_size}")
        if k % 4 != 0:
            raise ValueError(f"k must be a multiple of 4, got {k}")
        self.backbone_name = backbone if isinstance(backbone, str) else type(backbone).__name__
        self.input_size = input_size
        self.channels_last = channels_last
        body = _build_backbone(backbone) if isinstance(backbone, str) else backbone
        self.JLModule = JointLearningEncoder(body, k, compression_widths, full_res_width)
        self.FA = nn.ModuleList(FeatureAggregation(k) for _ in range(5))
        # upsampling[step][m] lifts by 2^(m+1): kernel 2^(m+2), stride 2^(m+1), padding 2^m.
        self.upsampling = nn.ModuleList(
            nn.ModuleList(nn.ConvTranspose2d(k, k, 2 ** (m + 2), 2 ** (m + 1), 2 ** m)
                          for m in range(step + 1))
            for step in range(4))
        self.score_JL = ScoreLayer(k)
        self.score_DCF = ScoreLayer(k)

    @staticmethod
    def _check_inputs(rgb: Tensor, depth: Tensor) -> None:
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be (N,3,H,W), got {tuple(rgb.shape)}")
        if depth.dim() != 4 or depth.shape[1] != 1:
            raise ValueError(f"depth must be (N,1,H,W), got {tuple(depth.shape)}")
        if rgb.shape[0] != depth.shape[0] or rgb.shape[2:] != depth.shape[2:]:
            raise ValueError(f"rgb {tuple(rgb.shape)} and depth {tuple(depth.shape)} "
                             "disagree in batch or size")
        if rgb.shape[2] % TOTAL_STRIDE or rgb.shape[3] % TOTAL_STRIDE:
            raise ValueError(f"spatial size must be a multiple of {TOTAL_STRIDE}, got {tuple(rgb.shape[2:])}")

    def _joint_input(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """Official pre-processing on [0,1] inputs: RGB order, ImageNet mean/std; the depth map is read
        as a 3-channel image (gray replicated) and normalised the same way. RGB first, depth second."""
        self._check_inputs(rgb, depth)
        rgb_in = normalize(rgb, IMAGENET_MEAN, IMAGENET_STD)
        depth_in = normalize(depth.expand(-1, 3, -1, -1), IMAGENET_MEAN, IMAGENET_STD)
        joint = torch.cat([rgb_in, depth_in], 0)
        return joint.contiguous(memory_format=torch.channels_last) if self.channels_last else joint

    def _final_and_coarse(self, rgb: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
        """Final logits (N,1,S,S) and coarse JL logits (2N,1,S/16,S/16), RGB half first."""
        n = rgb.shape[0]
        levels = self.JLModule(self._joint_input(rgb, depth))
        coarse = self.score_JL(levels[-1])
        cross_modal = [f[:n] + f[n:] + f[:n] * f[n:] for f in levels][::-1]  # deepest first
        aggregated = [self.FA[4](cross_modal[1], [cross_modal[0]])]
        for step, lifts in enumerate(self.upsampling):
            lifted = [lifts[step - j](a) for j, a in enumerate(aggregated)]
            aggregated.append(self.FA[3 - step](cross_modal[step + 2], lifted))
        return self.score_DCF(aggregated[-1]), coarse

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """(N,3,S,S) RGB and (N,1,S,S) depth in [0,1] -> (N,1,S,S) final pre-sigmoid logits."""
        return self._final_and_coarse(rgb, depth)[0]

    def training_outputs(self, rgb: Tensor, depth: Tensor) -> list[Tensor]:
        """[final, coarse RGB, coarse depth] logits, each (N,1,S,S).

        The official loss is BCE_sum(final, G) + 256 * BCE_sum(coarse_{rgb,depth}, G at S/16) with G
        resized by bilinear interpolation (align_corners=True). Here the coarse logits are instead
        upsampled to S the same way, so plain per-pixel BCE on each output weighs the coarse terms as
        the factor 256 = 16^2 does. (The official solver keeps BatchNorm in eval mode while training.)
        """
        n = rgb.shape[0]
        final, coarse = self._final_and_coarse(rgb, depth)
        coarse = F.interpolate(coarse, size=final.shape[2:], mode="bilinear", align_corners=True)
        return [final, coarse[:n], coarse[n:]]

    def postprocess(self, logits: Tensor, size: tuple[int, int]) -> Tensor:
        """Official test: bilinear resize to the GT size (align_corners=True), sigmoid, per-image
        min-max normalisation (eps 1e-8). The official script then saves 255 * p as an 8-bit PNG."""
        p = F.interpolate(logits, size=size, mode="bilinear", align_corners=True).sigmoid()
        lo = p.amin(dim=(1, 2, 3), keepdim=True)
        hi = p.amax(dim=(1, 2, 3), keepdim=True)
        return (p - lo) / (hi - lo + 1e-8)


def jldcf_tiny(input_size: int = 128) -> JLDCF:
    """A small JL-DCF (~0.9M parameters) for CPU experiments: the same architecture with a
    one-block-per-stage ResNet of width 8, k = 8, thin full-resolution layers (which dominate the cost)
    and NHWC layout."""
    return JLDCF(ResNetBackbone((1, 1, 1, 1), width=8), input_size=input_size, k=8,
                 compression_widths=(4, 8, 16, 16, 32, 32), full_res_width=4, channels_last=True)
