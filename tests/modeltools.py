"""Test helpers (a module, not conftest, so that nested conftest files cannot shadow them)."""

from __future__ import annotations

from pathlib import Path

REAL_SCANS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_scans"


def randomize_bn(net) -> None:
    """Give batch norms non-trivial statistics so equivalence tests can fail."""
    import torch

    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.2, 0.2, generator=g)


def write_random_model(path: Path, classes: list[str], seed: int = 0) -> Path:
    """A random-weight model file with a valid manifest."""
    import torch

    from scanlab.core.engine.network import build_model
    from scanlab.core.modelfile.store import make_manifest, save_model

    torch.manual_seed(seed)
    net = build_model(len(classes)).eval()
    randomize_bn(net)
    save_model(net, make_manifest(net, classes, name="random-test"), path)
    return path
