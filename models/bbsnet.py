"""BBS-Net: RGB-D salient object detection with a Bifurcated Backbone Strategy network.

Fan, Zhai, Borji, Yang, Shao, "BBS-Net: RGB-D Salient Object Detection with a Bifurcated Backbone
Strategy Network", ECCV 2020.

Two ResNet-50 streams (RGB, and a 1-channel depth stream) are fused after every stage by the
depth-enhanced module (DEM): ``f_rgb <- f_rgb + SA(CA(f_d) * f_d) * (CA(f_d) * f_d)``. The high-level
("teacher") features feed a cascaded decoder that predicts an initial map ``S1``; the low-level
("student") features are refined by it, ``f <- f + f * sigmoid(S1)``, and a second cascaded decoder plus
a progressively transposed module (PTM) predicts the final map ``S2``. Test time evaluates ``S2``;
training supervises both maps with BCE.

Module attribute names follow the released checkpoint so it loads with ``strict=True``. Pre-processing
as in the official test loader: RGB is ImageNet-normalised, depth enters as one channel in [0, 1].
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import IMAGENET_MEAN, IMAGENET_STD, SaliencyModel, normalize
from models.preprocessing import pil_bilinear

RESNET50_BLOCKS = (3, 4, 6, 3)
DEM_STAGES = ("0", "1", "2", "3_1", "4_1")


def _upsample(x: Tensor, factor: int) -> Tensor:
    """Bilinear upsampling by an integer factor with ``align_corners=True`` (as used throughout BBS-Net)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 -> 3x3 with the stride -> 1x1 expanding by 4) with a residual connection."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNetBackbone(nn.Module):
    """Bottleneck ResNet without the classifier; stages are named ``layer1, layer2, layer3_1, layer4_1``.

    ``width=64, blocks=(3, 4, 6, 3)`` is ResNet-50. Stage outputs have strides 4, 8, 16, 32 and
    ``4 * width * (1, 2, 4, 8)`` channels; the stem output has stride 4 and ``width`` channels.
    """

    def __init__(self, in_channels: int, width: int = 64, blocks: Sequence[int] = RESNET50_BLOCKS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        stages = []
        for i, n_blocks in enumerate(blocks):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            layers = [Bottleneck(channels, planes, stride)]
            channels = planes * Bottleneck.expansion
            layers += [Bottleneck(channels, planes) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3_1, self.layer4_1 = stages
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def stages(self) -> tuple[nn.Module, ...]:
        return self.layer1, self.layer2, self.layer3_1, self.layer4_1

    def stem(self, x: Tensor) -> Tensor:
        """conv7x7/2 -> BN -> ReLU -> max-pool 3x3/2."""
        return F.max_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)


class ChannelAttention(nn.Module):
    """DEM channel attention: ``sigmoid(W2 relu(W1 maxpool(f)))`` (global max-pool only)."""

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(x, 1)))).sigmoid()


class SpatialAttention(nn.Module):
    """DEM spatial attention: ``sigmoid(conv7x7(max_c f))``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 7, padding=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv1(x.amax(dim=1, keepdim=True)).sigmoid()


class ConvBN(nn.Module):
    """Convolution (no bias) followed by BatchNorm, with no activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class GlobalContextModule(nn.Module):
    """GCM: four branches (1x1; 1x1 -> 1xk -> kx1 -> 3x3 dilated k, for k = 3, 5, 7), concatenated and
    fused by a 3x3 conv, plus a 1x1 residual: ``relu(conv_cat([b0..b3]) + conv_res(x))``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(ConvBN(in_channels, out_channels, 1))
        self.branch1 = self._branch(in_channels, out_channels, 3)
        self.branch2 = self._branch(in_channels, out_channels, 5)
        self.branch3 = self._branch(in_channels, out_channels, 7)
        self.conv_cat = ConvBN(4 * out_channels, out_channels, 3, padding=1)
        self.conv_res = ConvBN(in_channels, out_channels, 1)

    @staticmethod
    def _branch(in_channels: int, out_channels: int, k: int) -> nn.Sequential:
        return nn.Sequential(
            ConvBN(in_channels, out_channels, 1),
            ConvBN(out_channels, out_channels, (1, k), padding=(0, k // 2)),
            ConvBN(out_channels, out_channels, (k, 1), padding=(k // 2, 0)),
            ConvBN(out_channels, out_channels, 3, padding=k, dilation=k),
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)
        return F.relu(self.conv_cat(branches) + self.conv_res(x))


class CascadedDecoder(nn.Module):
    """Cascaded partial decoder over three levels (coarse ``top``, ``mid`` at 2x, ``low`` at
    ``low_scale`` x ``mid``): features are multiplied by upsampled coarser ones and concatenated.

    ``low_scale=2, predict=True`` is decoder 1 (returns the 1-channel initial map); ``low_scale=1,
    predict=False`` is decoder 2 (returns ``3 * channel`` features for the PTM).
    """

    def __init__(self, channel: int, low_scale: int, predict: bool) -> None:
        super().__init__()
        self.low_scale = low_scale
        self.conv_upsample1 = ConvBN(channel, channel, 3, padding=1)
        self.conv_upsample2 = ConvBN(channel, channel, 3, padding=1)
        self.conv_upsample3 = ConvBN(channel, channel, 3, padding=1)
        self.conv_upsample4 = ConvBN(channel, channel, 3, padding=1)
        self.conv_upsample5 = ConvBN(2 * channel, 2 * channel, 3, padding=1)
        self.conv_concat2 = ConvBN(2 * channel, 2 * channel, 3, padding=1)
        self.conv_concat3 = ConvBN(3 * channel, 3 * channel, 3, padding=1)
        self.predict = predict
        if predict:
            self.conv4 = ConvBN(3 * channel, 3 * channel, 3, padding=1)
            self.conv5 = nn.Conv2d(3 * channel, 1, 1)

    def _to_low(self, x: Tensor) -> Tensor:
        return x if self.low_scale == 1 else _upsample(x, self.low_scale)

    def forward(self, top: Tensor, mid: Tensor, low: Tensor) -> Tensor:
        top_at_mid = _upsample(top, 2)
        mid_fused = self.conv_upsample1(top_at_mid) * mid
        low_fused = self.conv_upsample2(self._to_low(top_at_mid)) * self.conv_upsample3(self._to_low(mid)) * low
        mid_fused = self.conv_concat2(torch.cat((mid_fused, self.conv_upsample4(top_at_mid)), 1))
        low_fused = self.conv_concat3(torch.cat((low_fused, self.conv_upsample5(self._to_low(mid_fused))), 1))
        if self.predict:
            return self.conv5(self.conv4(low_fused))
        return low_fused


class TransposeBlock(nn.Module):
    """PTM residual block: conv3x3 -> BN -> ReLU -> (conv3x3 | transposed conv3x3/2) -> BN, plus the
    identity or, when upsampling, a transposed conv2x2/2 + BN shortcut; ReLU at the end."""

    def __init__(self, channels: int, upsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = (
            nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1, bias=False)
            if upsample
            else nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        )
        self.bn2 = nn.BatchNorm2d(channels)
        self.upsample = (
            nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=False), nn.BatchNorm2d(channels))
            if upsample
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.upsample is None else self.upsample(x)
        return F.relu(out + shortcut)


def _transpose_stage(channels: int, blocks: int) -> nn.Sequential:
    """``blocks - 1`` same-resolution blocks followed by one 2x upsampling block."""
    layers = [TransposeBlock(channels, upsample=False) for _ in range(blocks - 1)]
    return nn.Sequential(*layers, TransposeBlock(channels, upsample=True))


def _conv1x1_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())


class BBSNet(SaliencyModel):
    """BBS-Net (ECCV 2020). Defaults give the official ResNet-50 configuration at 352x352.

    ``postprocess`` is the base-class default, which is the official test post-processing: bilinear
    resize of the logits to the GT size (``align_corners=False``), sigmoid, per-image min-max.

    Args:
        channel: decoder width (GCM outputs; the PTM runs at ``2*channel`` then ``channel``).
        backbone_width: stem width of both ResNet streams (64 for ResNet-50).
        backbone_blocks: bottleneck blocks per stage ((3, 4, 6, 3) for ResNet-50).
        transpose_blocks: residual blocks per PTM upsampling stage.
        attention_ratio: channel reduction of the DEM channel attention.
        input_size: network resolution S (a multiple of 32).
    """

    input_loader = staticmethod(pil_bilinear)

    def __init__(
        self,
        channel: int = 32,
        backbone_width: int = 64,
        backbone_blocks: Sequence[int] = RESNET50_BLOCKS,
        transpose_blocks: int = 3,
        attention_ratio: int = 16,
        input_size: int = 352,
    ) -> None:
        super().__init__()
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        self.input_size = input_size
        self.resnet = ResNetBackbone(3, backbone_width, backbone_blocks)
        self.resnet_depth = ResNetBackbone(1, backbone_width, backbone_blocks)
        c0, c1, c2, c3, c4 = (backbone_width * k for k in (1, 4, 8, 16, 32))

        self.rfb2_1 = GlobalContextModule(c2, channel)
        self.rfb3_1 = GlobalContextModule(c3, channel)
        self.rfb4_1 = GlobalContextModule(c4, channel)
        self.agg1 = CascadedDecoder(channel, low_scale=2, predict=True)

        self.rfb0_2 = GlobalContextModule(c0, channel)
        self.rfb1_2 = GlobalContextModule(c1, channel)
        self.rfb5_2 = GlobalContextModule(c2, channel)
        self.agg2 = CascadedDecoder(channel, low_scale=1, predict=False)

        for stage, c in zip(DEM_STAGES, (c0, c1, c2, c3, c4)):
            self.add_module(f"atten_depth_channel_{stage}", ChannelAttention(c, attention_ratio))
        for stage in DEM_STAGES:
            self.add_module(f"atten_depth_spatial_{stage}", SpatialAttention())

        self.deconv1 = _transpose_stage(2 * channel, transpose_blocks)
        self.deconv2 = _transpose_stage(channel, transpose_blocks)
        self.agant1 = _conv1x1_bn_relu(3 * channel, 2 * channel)
        self.agant2 = _conv1x1_bn_relu(2 * channel, channel)
        # out0_conv / out1_conv are unused by the official forward; they exist so the release loads strictly.
        self.out0_conv = nn.Conv2d(3 * channel, 1, 1)
        self.out1_conv = nn.Conv2d(2 * channel, 1, 1)
        self.out2_conv = nn.Conv2d(channel, 1, 1)

    def _depth_enhanced(self, depth_feature: Tensor, stage: str) -> Tensor:
        """DEM: ``g = f_d * CA(f_d)``, returns ``g * SA(g)`` (added to the RGB feature)."""
        enhanced = depth_feature * getattr(self, f"atten_depth_channel_{stage}")(depth_feature)
        return enhanced * getattr(self, f"atten_depth_spatial_{stage}")(enhanced)

    def _saliency_maps(self, rgb: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the initial map S1 at stride 8 and the final map S2 at full resolution (logits)."""
        x = self.resnet.stem(normalize(rgb, IMAGENET_MEAN, IMAGENET_STD))
        d = self.resnet_depth.stem(depth)
        fused = [x + self._depth_enhanced(d, DEM_STAGES[0])]
        for rgb_stage, depth_stage, stage in zip(self.resnet.stages, self.resnet_depth.stages, DEM_STAGES[1:]):
            d = depth_stage(d)
            fused.append(rgb_stage(fused[-1]) + self._depth_enhanced(d, stage))
        f0, f1, f2, f3, f4 = fused

        initial = self.agg1(self.rfb4_1(f4), self.rfb3_1(f3), self.rfb2_1(f2))

        attention = initial.sigmoid()
        attention_up = _upsample(attention, 2)
        f0 = f0 + f0 * attention_up
        f1 = f1 + f1 * attention_up
        f2 = f2 + f2 * attention

        y = self.agg2(self.rfb5_2(f2), self.rfb1_2(f1), self.rfb0_2(f0))
        y = self.deconv2(self.agant2(self.deconv1(self.agant1(y))))
        return initial, self.out2_conv(y)

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """(N,3,S,S) RGB and (N,1,S,S) depth in [0,1] -> (N,1,S,S) logits of the final map S2."""
        return self._saliency_maps(rgb, depth)[1]

    def training_outputs(self, rgb: Tensor, depth: Tensor) -> list[Tensor]:
        """[S1 upsampled 8x, S2]: the two logit maps the official loss supervises (BCE on each, summed)."""
        initial, final = self._saliency_maps(rgb, depth)
        return [_upsample(initial, 8), final]


def bbsnet_tiny(input_size: int = 128) -> BBSNet:
    """A small BBS-Net (same code, narrow one-block-per-stage ResNets, narrow decoder) for CPU training."""
    return BBSNet(channel=8, backbone_width=8, backbone_blocks=(1, 1, 1, 1), transpose_blocks=1, input_size=input_size)
