"""An inference-only copy of :class:`~scanlab.core.engine.network.ScannerNet`'s trunk, split by stage.

The dense engine (:mod:`scanlab.core.engine.dense`) needs the trunk in three pieces so
that shifted passes can share work: the stem (before the first 2x2 max-pool)
does not depend on the window residue mod 4 at all, the first inception module
depends only on the residue mod 2, and only the second inception module has to
run once per residue. This module provides those pieces with the weights
prepared for inference:

* every batch norm is folded into the convolution before it (eval semantics:
  running statistics), and the network's input centring ``x - 0.5`` is folded
  into the first convolution's bias (exact for unpadded convolutions);
* the three 1x1 convolutions that open an inception module's branches read the
  same input, so they run as one convolution with concatenated filters (a wider
  matrix product is more efficient than three narrow ones);
* on CPU builds with oneDNN, ReLU (and the residual add + ReLU) are fused into
  the convolutions through ``torch.ops.mkldnn._convolution_pointwise``, which
  saves a full pass over memory per layer; elsewhere (CUDA, MPS, CPU builds
  without oneDNN) plain ``conv2d`` + ``relu_`` is used;
* activations are kept channels-last, which oneDNN and cuDNN run fastest;
* extra rows of the last layer (the open set's "other scanner" output) can be
  appended to the head, so their logits come out of the same pass.

The head is reordered: the 1x1 "fc" convolution is applied *before* the
footprint average pool (both are linear, so the result is the same up to float
rounding) because it shrinks 96 channels to Ns before the pool.

All of this changes results only by float rounding (~1e-6 on probabilities);
the tests compare against the naive engine on the unmodified network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scanlab.core.engine.network import Inception, ScannerNet

_CL = torch.channels_last


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode statistics)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    w = conv.weight.detach() * scale[:, None, None, None]
    b = bn.bias.detach() - bn.running_mean.detach() * scale
    if conv.bias is not None:
        b = b + conv.bias.detach() * scale
    return w, b


def _pointwise_available(device: torch.device) -> bool:
    """True when oneDNN's fused conv+ReLU op exists and runs on this build."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        x = torch.zeros(1, 2, 3, 3).contiguous(memory_format=_CL)
        w = torch.zeros(2, 2, 1, 1).contiguous(memory_format=_CL)
        op(x, w, None, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
        op.binary(x, x, w, None, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], "")
    except Exception:  # noqa: BLE001 - any failure means "use the portable path"
        return False
    return True


class _Conv:
    """One folded convolution with an optional fused ReLU / residual add."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, device: torch.device, fused: bool) -> None:
        self.w = w.to(device=device, dtype=torch.float32).contiguous(memory_format=_CL)
        self.b = b.to(device=device, dtype=torch.float32).contiguous()
        self.fused = fused

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(conv(x))``."""
        if self.fused:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.w, self.b, [0, 0], [1, 1], [1, 1], 1, "relu", [], ""
            )
        return F.relu_(F.conv2d(x, self.w, self.b))

    def add_relu(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``relu(conv(x) + other)``."""
        if self.fused:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self.w, self.b, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], ""
            )
        return F.relu_(F.conv2d(x, self.w, self.b).add_(other))


class _FusedInception:
    """An :class:`~scanlab.core.engine.network.Inception` module with folded, merged weights."""

    def __init__(self, inc: Inception, device: torch.device, fused: bool) -> None:
        heads = [
            _fold(inc.b1[0], inc.b1[1]),
            _fold(inc.b3[0][0], inc.b3[0][1]),
            _fold(inc.b5[0][0], inc.b5[0][1]),
        ]
        self.split = [w.shape[0] for w, _ in heads]
        self.entry = _Conv(
            torch.cat([w for w, _ in heads]), torch.cat([b for _, b in heads]), device, fused
        )
        self.conv3 = _Conv(*_fold(inc.b3[1][0], inc.b3[1][1]), device, fused)
        self.conv5 = _Conv(*_fold(inc.b5[1][0], inc.b5[1][1]), device, fused)
        self.shortcut = _Conv(*_fold(inc.shortcut[0], inc.shortcut[1]), device, fused)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n1, n3, _ = self.split
        a = self.entry.relu(x)
        y3 = self.conv3.relu(a[:, n1 : n1 + n3])
        y5 = self.conv5.relu(a[:, n1 + n3 :])
        # Same crops as Inception.forward: every branch lands on the 5x5 branch's centres.
        body = torch.cat([a[:, :n1, 2:-2, 2:-2], y3[..., 1:-1, 1:-1], y5], dim=1)
        # The shortcut is a 1x1 convolution, so cropping its input equals cropping its output
        # (and saves the work on the border).
        return self.shortcut.add_relu(x[..., 2:-2, 2:-2], body)


class FusedTrunk:
    """Inference-only trunk of a :class:`ScannerNet`, in stages, on one device.

    Parameters
    ----------
    net : ScannerNet
        The network; it is read, never modified (its mode and device stay as they are).
    device : torch.device
        Where the copy lives and runs.

    Notes
    -----
    For an input tile ``x`` (channels-last float32 in [0, 1]) and a window residue
    ``r = p1 + 2 * p2`` (``p1, p2`` in {0, 1}) per axis,
    ``stage2(stage1(stem(x), p1), p2)`` equals ``net.trunk(x[..., r:, r:])``: valid
    convolutions commute with shifts, and a shift by ``r`` before the first pool
    is a shift by ``p1`` before it and by ``p2`` before the second.
    """

    def __init__(
        self, net: ScannerNet, device: torch.device, extra: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> None:
        self.device = device
        self.fused = _pointwise_available(device)
        self.n_classes = net.n_classes
        self.footprint = net.footprint
        with torch.no_grad():
            w1, b1 = _fold(net.stem[0][0], net.stem[0][1])
            # conv(x - 0.5) = conv(x) - 0.5 * sum(w): fold the input centring into the bias.
            b1 = b1 - 0.5 * w1.sum(dim=(1, 2, 3))
            self.conv1 = _Conv(w1, b1, device, self.fused)
            self.conv2 = _Conv(*_fold(net.stem[1][0], net.stem[1][1]), device, self.fused)
            self.inc1 = _FusedInception(net.inc1, device, self.fused)
            self.inc2 = _FusedInception(net.inc2, device, self.fused)
            fc_w, fc_b = net.fc.weight.detach().float(), net.fc.bias.detach().float()
            if extra is not None:
                # extra rows of the last layer over the same features (the "other scanner"
                # output): one (Ns + k)-row product instead of a second pass over the trunk
                fc_w = torch.cat([fc_w, extra[0].detach().float().reshape(-1, fc_w.shape[1]).to(fc_w.device)])
                fc_b = torch.cat([fc_b, extra[1].detach().float().reshape(-1).to(fc_b.device)])
            self.fc_w = fc_w[:, :, None, None].to(device, torch.float32).contiguous(memory_format=_CL)
            self.fc_b = fc_b.to(device, torch.float32)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Two 3x3 conv+BN+ReLU layers at full resolution (before any pooling)."""
        return self.conv2.relu(self.conv1.relu(x))

    def stage1(self, s: torch.Tensor, py: int, px: int) -> torch.Tensor:
        """First pool (phase ``py, px``) and first inception module."""
        return self.inc1(F.max_pool2d(s[..., py:, px:], 2))

    def stage2(self, a: torch.Tensor, py: int, px: int) -> torch.Tensor:
        """Second pool (phase ``py, px``) and second inception module: the trunk's features."""
        return self.inc2(F.max_pool2d(a[..., py:, px:], 2))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Window logits ``(B, Ns [+ k extra rows], h - 8, w - 8)`` from features ``(B, C, h, w)``.

        The 1x1 fc convolution runs before the footprint average pool (both are
        linear); the pool then only sees Ns channels.
        """
        z = F.conv2d(f, self.fc_w)
        z = F.avg_pool2d(z, self.footprint, stride=1)
        return z + self.fc_b[None, :, None, None]
