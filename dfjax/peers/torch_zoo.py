"""PyTorch mirrors of dfjax's deeper detectors: Xception, the ResNets and the DCGAN
discriminator, with their converters from Flax variables (`CONVERTERS`, used by
`dfjax.peers.torch_models.from_flax`).

Each takes NCHW float32 in [0, 1], normalises inside as its Flax model does, and runs
BatchNorm in eval mode. Padding follows the Flax model exactly: Xception's and the
discriminator's "SAME" convs are asymmetric at stride 2 where the total is odd
(`SameConv2d`); the ResNets pad symmetrically (k // 2) as torchvision does.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dfjax.peers._torch_layers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    SameConv2d,
    batch_norm,
    copy_batch_norm,
    copy_conv,
    copy_dense,
    in_features,
    infer_feature_hw,
    out_features,
    sorted_layers,
)

# ---------------------------------------------------------------- Xception


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (padding 1, = SAME at stride 1) then pointwise 1x1, no biases."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def max_pool_3x3_s2_same(x: torch.Tensor) -> torch.Tensor:
    """Flax's 3x3 stride-2 "SAME" max pool of x [b, c, h, w]: padding (0, 1) on an even
    side, (1, 1) on an odd one. ceil_mode with padding (h % 2, w % 2) gives exactly
    those windows (a window that runs past the end is clipped, as -inf padding would
    be) without copying x into a padded buffer."""
    h, w = x.shape[-2:]
    return F.max_pool2d(x, 3, stride=2, padding=(h % 2, w % 2), ceil_mode=True)


class DownBlock(nn.Module):
    """[ReLU] sepconv-BN-ReLU-sepconv-BN, 3x3/2 max pool, plus a strided 1x1 conv + BN
    residual (a 1x1 conv at stride 2 needs no padding under SAME)."""

    def __init__(self, in_channels: int, features: tuple[int, int], relu_first: bool):
        super().__init__()
        self.residual_conv = nn.Conv2d(in_channels, features[1], 1, stride=2, bias=False)
        self.residual_norm = batch_norm(features[1])
        self.relu_first = relu_first
        self.sep1, self.norm1 = SeparableConv2d(in_channels, features[0]), batch_norm(features[0])
        self.sep2, self.norm2 = SeparableConv2d(*features), batch_norm(features[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.residual_norm(self.residual_conv(x))
        if self.relu_first:
            x = F.relu(x)
        x = F.relu(self.norm1(self.sep1(x)))
        x = self.norm2(self.sep2(x))
        return max_pool_3x3_s2_same(x) + residual


class MiddleBlock(nn.Module):
    """Three ReLU-sepconv-BN units with an identity residual."""

    def __init__(self, features: int):
        super().__init__()
        self.seps = nn.ModuleList(SeparableConv2d(features, features) for _ in range(3))
        self.norms = nn.ModuleList(batch_norm(features) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        for sep, norm in zip(self.seps, self.norms):
            x = norm(sep(F.relu(x)))
        return x + residual


class Xception(nn.Module):
    """Xception (Chollet 2017, arXiv:1610.02357; dfjax.models.xception.Xception): x [b, 3,
    h, w] in [0, 1] -> logits [b, num_logits], any h, w.

    stem: the two stem convs' widths (32, 64 at width 1); down: the (sepconv 1,
    sepconv 2) widths of the four down blocks (the first without a leading ReLU), the
    middle blocks between the third and the fourth; exit_features: the two exit
    sepconvs' widths.
    """

    def __init__(self, *, num_logits: int = 2, stem: tuple[int, int] = (32, 64),
                 down: Sequence[tuple[int, int]] = ((128, 128), (256, 256), (728, 728),
                                                    (728, 1024)),
                 middle_blocks: int = 8, exit_features: tuple[int, int] = (1536, 2048),
                 in_channels: int = 3):
        super().__init__()
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.stem1 = SameConv2d(in_channels, stem[0], 3, stride=2, bias=False)
        self.stem_norm1 = batch_norm(stem[0])
        self.stem2 = nn.Conv2d(stem[0], stem[1], 3, padding=1, bias=False)
        self.stem_norm2 = batch_norm(stem[1])
        channels, blocks = stem[1], []
        for i, widths in enumerate(down[:3]):
            blocks.append(DownBlock(channels, tuple(widths), relu_first=i > 0))
            channels = widths[1]
        self.entry = nn.ModuleList(blocks)
        self.middle = nn.ModuleList(MiddleBlock(channels) for _ in range(middle_blocks))
        self.exit_block = DownBlock(channels, tuple(down[3]), relu_first=True)
        self.exit1 = SeparableConv2d(down[3][1], exit_features[0])
        self.exit_norm1 = batch_norm(exit_features[0])
        self.exit2 = SeparableConv2d(*exit_features)
        self.exit_norm2 = batch_norm(exit_features[1])
        self.fc = nn.Linear(exit_features[1], num_logits)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = F.relu(self.stem_norm1(self.stem1(x)))
        x = F.relu(self.stem_norm2(self.stem2(x)))
        for block in [*self.entry, *self.middle, self.exit_block]:
            x = block(x)
        x = F.relu(self.exit_norm1(self.exit1(x)))
        x = F.relu(self.exit_norm2(self.exit2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _copy_separable(layer: SeparableConv2d, p: Mapping[str, Any]) -> None:
    copy_conv(layer.depthwise, p["depthwise"])
    copy_conv(layer.pointwise, p["pointwise"])


def _norm_pairs(params: Mapping[str, Any], stats: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    return list(zip(sorted_layers(params, "BatchNorm"), sorted_layers(stats, "BatchNorm")))


def _copy_down_block(block: DownBlock, params: Mapping[str, Any], stats: Mapping[str, Any]
                     ) -> None:
    # Flax creates the residual's BatchNorm first, then one after each sepconv
    (res_p, res_s), (p1, s1), (p2, s2) = _norm_pairs(params, stats)
    copy_conv(block.residual_conv, params["Conv_0"])
    copy_batch_norm(block.residual_norm, res_p, res_s)
    _copy_separable(block.sep1, params["SeparableConv_0"])
    copy_batch_norm(block.norm1, p1, s1)
    _copy_separable(block.sep2, params["SeparableConv_1"])
    copy_batch_norm(block.norm2, p2, s2)


def _xception_from_flax(variables: Mapping[str, Any], feature_hw) -> Xception:
    params, stats = variables["params"], variables["batch_stats"]
    down = sorted_layers(params, "DownBlock")
    middle = sorted_layers(params, "MiddleBlock")
    down_stats = sorted_layers(stats, "DownBlock")
    middle_stats = sorted_layers(stats, "MiddleBlock")
    convs, seps = sorted_layers(params, "Conv"), sorted_layers(params, "SeparableConv")
    model = Xception(
        num_logits=out_features(params["Dense_0"]),
        stem=(out_features(convs[0]), out_features(convs[1])),
        down=[(out_features(p["SeparableConv_0"]["pointwise"]),
               out_features(p["SeparableConv_1"]["pointwise"])) for p in down],
        middle_blocks=len(middle),
        exit_features=(out_features(seps[0]["pointwise"]), out_features(seps[1]["pointwise"])),
        in_channels=in_features(convs[0]))
    (stem_p1, stem_s1), (stem_p2, stem_s2), (exit_p1, exit_s1), (exit_p2, exit_s2) = (
        _norm_pairs(params, stats))
    with torch.no_grad():
        copy_conv(model.stem1, convs[0])
        copy_batch_norm(model.stem_norm1, stem_p1, stem_s1)
        copy_conv(model.stem2, convs[1])
        copy_batch_norm(model.stem_norm2, stem_p2, stem_s2)
        for block, p, s in zip([*model.entry, model.exit_block], down, down_stats):
            _copy_down_block(block, p, s)
        for block, p, s in zip(model.middle, middle, middle_stats):
            for sep, flax_sep in zip(block.seps, sorted_layers(p, "SeparableConv")):
                _copy_separable(sep, flax_sep)
            for norm, (norm_p, norm_s) in zip(block.norms, _norm_pairs(p, s)):
                copy_batch_norm(norm, norm_p, norm_s)
        _copy_separable(model.exit1, seps[0])
        copy_batch_norm(model.exit_norm1, exit_p1, exit_s1)
        _copy_separable(model.exit2, seps[1])
        copy_batch_norm(model.exit_norm2, exit_p2, exit_s2)
        copy_dense(model.fc, params["Dense_0"])
    return model


# ---------------------------------------------------------------- ResNets


class BasicBlock(nn.Module):
    """Two 3x3 convs + BN (ResNet-18/34); a 1x1 conv + BN shortcut when `project`."""

    expansion = 1

    def __init__(self, in_channels: int, features: int, stride: int, project: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, features, 3, stride, padding=1, bias=False)
        self.bn1 = batch_norm(features)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn2 = batch_norm(features)
        self.downsample = (nn.Sequential(nn.Conv2d(in_channels, features, 1, stride, bias=False),
                                         batch_norm(features)) if project else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 x4 with BN (torchvision's v1.5 layout, as dfjax's)."""

    expansion = 4

    def __init__(self, in_channels: int, features: int, stride: int, project: bool):
        super().__init__()
        out = features * self.expansion
        self.conv1 = nn.Conv2d(in_channels, features, 1, bias=False)
        self.bn1 = batch_norm(features)
        self.conv2 = nn.Conv2d(features, features, 3, stride, padding=1, bias=False)
        self.bn2 = batch_norm(features)
        self.conv3 = nn.Conv2d(features, out, 1, bias=False)
        self.bn3 = batch_norm(out)
        self.downsample = (nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False),
                                         batch_norm(out)) if project else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet (He et al. 2016, arXiv:1512.03385; dfjax.models.resnet.ResNet): x [b, 3, h,
    w] in [0, 1] -> logits [b, num_logits], any h, w. ImageNet normalisation, stem 7x7/2
    conv + BN + ReLU + 3x3/2 max pool (padding 1), stages of blocks (stride 2 from the
    second stage), global average pool, `fc`. Stage i has width * 2**i features.
    """

    def __init__(self, *, num_logits: int = 2, stage_sizes: Sequence[int] = (3, 4, 6, 3),
                 block: str = "bottleneck", width: int = 64, in_channels: int = 3):
        super().__init__()
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=False)
        self.bn1 = batch_norm(width)
        channels, stages = width, []
        for i, blocks in enumerate(stage_sizes):
            features = width * 2**i
            stage = []
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                project = stride != 1 or channels != features * block_cls.expansion
                stage.append(block_cls(channels, features, stride, project))
                channels = features * block_cls.expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(channels, num_logits)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        for stage in self.stages:
            x = stage(x)
        return self.fc(x.mean(dim=(2, 3)))


def _resnet_from_flax(variables: Mapping[str, Any], feature_hw, *, block: str) -> ResNet:
    params, stats = variables["params"], variables["batch_stats"]
    stage_sizes: list[int] = []
    for key in params:  # layer{i}_{j}
        if key.startswith("layer"):
            stage, index = (int(n) for n in key.removeprefix("layer").split("_"))
            stage_sizes += [0] * (stage - len(stage_sizes))
            stage_sizes[stage - 1] = max(stage_sizes[stage - 1], index + 1)
    found = "bottleneck" if "conv3" in params["layer1_0"] else "basic"
    if found != block:
        raise ValueError(f"the variables hold a ResNet of {found} blocks, not {block} ones")
    model = ResNet(num_logits=out_features(params["fc"]), stage_sizes=stage_sizes, block=block,
                   width=out_features(params["conv1"]), in_channels=in_features(params["conv1"]))
    convs = ("conv1", "conv2", "conv3") if block == "bottleneck" else ("conv1", "conv2")
    with torch.no_grad():
        copy_conv(model.conv1, params["conv1"])
        copy_batch_norm(model.bn1, params["bn1"], stats["bn1"])
        for i, stage in enumerate(model.stages):
            for j, layer in enumerate(stage):
                p, s = params[f"layer{i + 1}_{j}"], stats[f"layer{i + 1}_{j}"]
                for conv in convs:
                    norm = conv.replace("conv", "bn")
                    copy_conv(getattr(layer, conv), p[conv])
                    copy_batch_norm(getattr(layer, norm), p[norm], s[norm])
                if ("downsample_conv" in p) != (layer.downsample is not None):
                    raise ValueError(f"layer{i + 1}_{j}: shortcut projection mismatch")
                if layer.downsample is not None:
                    copy_conv(layer.downsample[0], p["downsample_conv"])
                    copy_batch_norm(layer.downsample[1], p["downsample_bn"], s["downsample_bn"])
        copy_dense(model.fc, params["fc"])
    return model


# ---------------------------------------------------------------- DCGAN discriminator


class DCGANDiscriminator(nn.Module):
    """DCGAN's discriminator as a detector (Radford et al. 2016, arXiv:1511.06434;
    dfjax.models.gan.DCGANDiscriminator): x [b, 3, h, w] in [0, 1] -> logits [b,
    num_logits]. 4x4 stride-2 "SAME" convs (bias on the first only), BatchNorm on all
    but the first, LeakyReLU(0.2), then a dense classifier on the flattened map.

    feature_hw: the last map's (ceil(h / 2**n), ceil(w / 2**n)) for n convs.
    """

    def __init__(self, *, num_logits: int = 2, features: Sequence[int] = (64, 128, 256, 512),
                 feature_hw: tuple[int, int] = (4, 4), in_channels: int = 3):
        super().__init__()
        self.normalize = Normalize()
        widths = [in_channels, *features]
        self.convs = nn.ModuleList(SameConv2d(a, b, 4, stride=2, bias=i == 0)
                                   for i, (a, b) in enumerate(itertools.pairwise(widths)))
        self.norms = nn.ModuleList(batch_norm(f) for f in features[1:])
        self.fc = nn.Linear(features[-1] * feature_hw[0] * feature_hw[1], num_logits)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i > 0:
                x = self.norms[i - 1](x)
            x = F.leaky_relu(x, 0.2)
        return self.fc(torch.flatten(x, 1))


def _gan_disc_from_flax(variables: Mapping[str, Any], feature_hw) -> DCGANDiscriminator:
    params, stats = variables["params"], variables.get("batch_stats", {})
    convs = sorted_layers(params, "Conv")
    features = [out_features(p) for p in convs]
    hw = infer_feature_hw(in_features(params["Dense_0"]), features[-1], feature_hw)
    model = DCGANDiscriminator(num_logits=out_features(params["Dense_0"]), features=features,
                               feature_hw=hw, in_channels=in_features(convs[0]))
    with torch.no_grad():
        for layer, p in zip(model.convs, convs):
            copy_conv(layer, p)
        for layer, p, s in zip(model.norms, sorted_layers(params, "BatchNorm"),
                               sorted_layers(stats, "BatchNorm")):
            copy_batch_norm(layer, p, s)
        copy_dense(model.fc, params["Dense_0"], chw=(features[-1], *hw))
    return model


def _global_pool(converter):
    """A converter for a global-average-pool model, which takes any input size: it
    refuses a feature_hw (which only the flattening models need)."""
    def convert(variables: Mapping[str, Any], feature_hw) -> nn.Module:
        if feature_hw is not None:
            raise ValueError("feature_hw applies to models that flatten their last map; this "
                             "one pools it globally and takes any input size")
        return converter(variables, feature_hw)
    return convert


CONVERTERS = {
    "xception": _global_pool(_xception_from_flax),
    "resnet18": _global_pool(lambda v, hw: _resnet_from_flax(v, hw, block="basic")),
    "resnet50": _global_pool(lambda v, hw: _resnet_from_flax(v, hw, block="bottleneck")),
    "gan_disc": _gan_disc_from_flax,
}

__all__ = ["CONVERTERS", "DCGANDiscriminator", "ResNet", "Xception"]
