"""The light inception/residual CNN of the paper, built fully convolutional.

Every convolution and pooling is *valid* (unpadded), inception branches are
centre-cropped to the smallest branch before concatenation and the residual
shortcut (a 1x1 convolution followed by batch norm) is cropped the same way.
The head is global average pooling followed by a linear layer.

Why: with valid layers and a total downsampling of ``STRIDE`` (= 4, two 2x2
max-pools), running the trunk once over a whole image and average-pooling the
final feature map with the patch's footprint gives the logits of *every* 64x64
window whose corner is a multiple of 4, identical (to float rounding) to running
the windows one by one. :mod:`scanlab.core.engine.engines` relies on that.

Input convention: float32 tensor of shape (B, 3, H, W) with values in [0, 1]
(see :func:`scanlab.core.io.imaging.to_float`); the network centres it itself.
"""

from __future__ import annotations

import torch
from torch import nn

ARCH_NAME = "scanlab-incres"
ARCH_VERSION = 1
PATCH = 64
STRIDE = 4  # total downsampling of the trunk


def _crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop the last two axes of ``x`` to ``size`` x ``size`` offset-preserving.

    Crops are symmetric (the branch with a k x k kernel loses (k-1)/2 on each side
    relative to the 1x1 branch), so the crop keeps the same pixel centres for all
    branches and is valid for any input size, not only 64x64 patches.
    """
    dh = x.shape[-2] - size
    dw = x.shape[-1] - size
    if dh == 0 and dw == 0:
        return x
    return x[..., dh // 2 : x.shape[-2] - (dh - dh // 2), dw // 2 : x.shape[-1] - (dw - dw // 2)]


def _crop_by(x: torch.Tensor, border: int) -> torch.Tensor:
    """Remove ``border`` pixels from every side of the last two axes."""
    if border == 0:
        return x
    return x[..., border:-border, border:-border]


class ConvBN(nn.Sequential):
    """Valid convolution, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, padding=0, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Inception(nn.Module):
    """Inception module (1x1 / 3x3 / 5x5 branches) with a residual 1x1-conv+BN shortcut.

    All branches are valid, so the 5x5 branch is the smallest; the others are
    cropped by their border difference before concatenation (crop = 2 for the 1x1
    branch, 1 for the 3x3 branch). The output is ``relu(concat + shortcut)``.
    """

    border = 2  # pixels lost on each side

    def __init__(self, cin: int, c1: int, c3: int, c5: int) -> None:
        super().__init__()
        self.b1 = ConvBN(cin, c1, 1)
        self.b3 = nn.Sequential(ConvBN(cin, c3, 1), ConvBN(c3, c3, 3))
        self.b5 = nn.Sequential(ConvBN(cin, c5, 1), ConvBN(c5, c5, 5))
        cout = c1 + c3 + c5
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat(
            [_crop_by(self.b1(x), 2), _crop_by(self.b3(x), 1), self.b5(x)],
            dim=1,
        )
        return self.act(y + _crop_by(self.shortcut(x), 2))


class ScannerNet(nn.Module):
    """Light inception/residual network for 64x64 scanner-identification patches.

    Parameters
    ----------
    n_classes : int
        Number of scanner models Ns.
    width : int
        Channel multiplier; 1 gives the default (~0.2 M parameters).

    Notes
    -----
    Shapes for a 64x64 patch: stem 64 -> 60, pool 30, inception 26, pool 13,
    inception 9, global average pool over 9x9, linear to Ns logits.
    """

    def __init__(self, n_classes: int, width: int = 1) -> None:
        super().__init__()
        w = width
        self.n_classes = n_classes
        self.width = width
        self.stem = nn.Sequential(ConvBN(3, 24 * w, 3), ConvBN(24 * w, 32 * w, 3))
        self.pool1 = nn.MaxPool2d(2)
        self.inc1 = Inception(32 * w, 16 * w, 32 * w, 16 * w)
        self.pool2 = nn.MaxPool2d(2)
        self.inc2 = Inception(self.inc1.out_channels, 32 * w, 48 * w, 16 * w)
        self.feature_channels = self.inc2.out_channels
        self.fc = nn.Linear(self.feature_channels, n_classes)
        self.footprint = self.feature_size(PATCH)

    @staticmethod
    def feature_size(size: int) -> int:
        """Side of the final feature map for an input side of ``size`` pixels."""
        s = size - 4  # stem: two 3x3
        s = s // 2 - 4  # pool, inception (5x5 valid)
        s = s // 2 - 4
        return s

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of the trunk (no head); valid for any input >= 64 px."""
        x = x - 0.5
        x = self.stem(x)
        x = self.pool1(x)
        x = self.inc1(x)
        x = self.pool2(x)
        return self.inc2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B, Ns) for patches of shape (B, 3, 64, 64)."""
        f = self.trunk(x)
        return self.fc(f.mean(dim=(2, 3)))

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every 64x64 window at corners (4i, 4j) of a large input.

        Returns a tensor of shape (B, Ns, (H-64)//4 + 1, (W-64)//4 + 1); entry
        [:, :, i, j] equals ``forward`` on ``x[..., 4i:4i+64, 4j:4j+64]``.
        """
        f = self.trunk(x)
        f = nn.functional.avg_pool2d(f, self.footprint, stride=1)
        return torch.einsum("bchw,kc->bkhw", f, self.fc.weight) + self.fc.bias[None, :, None, None]


def build_model(n_classes: int, width: int = 1) -> ScannerNet:
    """Build a fresh network (random weights) for ``n_classes`` scanners."""
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    return ScannerNet(n_classes, width=width)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
