"""Model files: weights plus manifest in one safetensors file.

Layout: a single ``.safetensors`` file whose tensors are the network's
``state_dict`` and whose metadata holds one key, ``scanlab_manifest``, a JSON
manifest (classes, architecture and version, patch size, training recipe and
data summary, metrics, library versions, date, weights hash). safetensors
stores raw tensors and a JSON header only, so loading never executes code
from the file (unlike pickle-based ``torch.load``).

Saving is atomic: the file is written beside its destination under a temporary
name, flushed to disk and renamed over the target, so a crash or a cancelled
training run leaves any previous model intact.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

import scanlab
from scanlab.core.errors import ScanLabError
from scanlab.core.fileio import atomic_write_bytes, check_writable
from scanlab.core.imaging import sha256_file
from scanlab.core.network import (
    ARCH_NAME,
    ARCH_VERSION,
    PATCH,
    STRIDE,
    ScannerNet,
    count_parameters,
)

FORMAT = "scanlab-model"
FORMAT_VERSION = 1
META_KEY = "scanlab_manifest"


class ModelFileError(ScanLabError):
    """A model file is missing, corrupt, incompatible or mismatched."""


@dataclass
class LoadedModel:
    """A network ready for inference plus its manifest."""

    net: ScannerNet
    manifest: dict[str, Any]
    path: str

    @property
    def classes(self) -> list[str]:
        """Class (scanner) names, in output order."""
        return list(self.manifest["classes"])

    @property
    def name(self) -> str:
        """Human-readable model name."""
        return str(self.manifest.get("name") or Path(self.path).stem)

    def summary(self) -> dict[str, Any]:
        """Short provenance dict for JSON output and reports."""
        m = self.manifest
        return {
            "name": self.name,
            "path": self.path,
            "architecture": m["architecture"]["name"],
            "architecture_version": m["architecture"]["version"],
            "classes": self.classes,
            "weights_sha256": m.get("weights_sha256"),
            "file_sha256": m.get("_file_sha256"),
            "created": m.get("created"),
        }


def library_versions() -> dict[str, str]:
    """Versions recorded in every manifest."""
    return {
        "scanlab": scanlab.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def make_manifest(
    net: ScannerNet,
    classes: list[str],
    *,
    name: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """Build the manifest for ``net`` (see module docstring)."""
    if len(classes) != net.n_classes:
        raise ValueError(f"{len(classes)} class names for a {net.n_classes}-class network")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "classes": list(classes),
        "architecture": {
            "name": ARCH_NAME,
            "version": ARCH_VERSION,
            "width": net.width,
            "patch": PATCH,
            "stride": STRIDE,
            "parameters": count_parameters(net),
        },
        "input": {"channels": "RGB", "scale": "uint8/255 or uint16/65535 to [0,1]", "exif_orientation": "ignored"},
        "training": training or {},
        "metrics": metrics or {},
        "parent": parent,
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def save_model(net: ScannerNet, manifest: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """Save weights + manifest atomically to exactly ``path``; returns the stored manifest."""
    p = check_writable(path, what="model file")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    man = dict(manifest)
    man["weights_sha256"] = weights_digest(state)
    man.pop("_file_sha256", None)
    data = st_save(state, metadata={META_KEY: json.dumps(man, sort_keys=True)})
    atomic_write_bytes(p, data)
    return man


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a model file's manifest without building the network."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: model file not found")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a folder, not a ScanLab model file")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{p}: not a ScanLab model file or corrupt ({str(e).splitlines()[0][:120]})") from None
    if META_KEY not in meta:
        raise ModelFileError(f"{p}: safetensors file without a ScanLab manifest")
    try:
        man = json.loads(meta[META_KEY])
    except json.JSONDecodeError:
        raise ModelFileError(f"{p}: manifest is not valid JSON") from None
    if man.get("format") != FORMAT:
        raise ModelFileError(f"{p}: not a ScanLab model (format {man.get('format')!r})")
    if man.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"{p}: model format v{man.get('format_version')} is newer than this ScanLab reads")
    arch = man.get("architecture", {})
    if arch.get("name") != ARCH_NAME or arch.get("version") != ARCH_VERSION:
        raise ModelFileError(
            f"{p}: architecture {arch.get('name')} v{arch.get('version')} is not supported "
            f"(this ScanLab runs {ARCH_NAME} v{ARCH_VERSION})"
        )
    classes = man.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes):
        raise ModelFileError(f"{p}: manifest class list is missing or invalid")
    return man


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """Load a model file (no code execution), verify it and return the eval-mode network.

    Raises
    ------
    ModelFileError
        Missing, corrupt, foreign, other-architecture-version or inconsistent files.
    """
    p = Path(path)
    man = read_manifest(p)
    net = ScannerNet(len(man["classes"]), width=int(man["architecture"].get("width", 1)))
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{p}: corrupt weights ({str(e).splitlines()[0][:120]})") from None
    expect = man.get("weights_sha256")
    if expect and weights_digest(state) != expect:
        raise ModelFileError(f"{p}: weights do not match the manifest's hash (file damaged or edited)")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"{p}: weights do not fit the manifest's architecture ({str(e).splitlines()[0][:120]})") from None
    man["_file_sha256"] = sha256_file(p)
    return LoadedModel(net.to(device).eval(), man, str(p.resolve()))


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "n/a"


def model_card(manifest: dict[str, Any]) -> str:
    """Human-readable model card (markdown) derived from the manifest only."""
    m = manifest
    arch = m["architecture"]
    tr = m.get("training", {}) or {}
    data = tr.get("data", {}) or {}
    rec = tr.get("recipe", {}) or {}
    met = m.get("metrics", {}) or {}
    lines = [
        f"# Model card: {m.get('name')}",
        "",
        f"- Created: {m.get('created')}",
        f"- Architecture: {arch['name']} v{arch['version']} (width {arch.get('width')}, "
        f"{arch.get('parameters')} parameters, {arch['patch']}x{arch['patch']} patches, dense stride {arch['stride']})",
        f"- Classes ({len(m['classes'])}): {', '.join(m['classes'])}",
        f"- Weights SHA-256: `{m.get('weights_sha256')}`",
        f"- Parent model: {m.get('parent') or 'none (trained from scratch)'}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items()),
        "",
        "## Training data",
        "",
        f"- Folder: `{data.get('root')}` (content hash `{data.get('folder_hash')}`)",
        f"- Split train:val:test = {data.get('split')} by image within each class, seed {tr.get('seed')}",
    ]
    counts = data.get("counts") or {}
    if counts:
        lines += ["", "| class | train | val | test |", "|---|---:|---:|---:|"]
        for c, v in counts.items():
            lines.append(f"| {c} | {v.get('train', 0)} | {v.get('val', 0)} | {v.get('test', 0)} |")
    lines += [
        "",
        "## Recipe",
        "",
        "- " + ", ".join(f"{k}={v}" for k, v in rec.items()) if rec else "- (not recorded)",
        f"- Epochs run: {tr.get('epochs_run')}, best epoch: {tr.get('best_epoch')}, stopped: {tr.get('stop_reason')}",
        "",
        "## Accuracy",
        "",
        "| split | per patch | per image | images |",
        "|---|---:|---:|---:|",
    ]
    for split in ("val", "test"):
        s = met.get(split) or {}
        if s:
            lines.append(
                f"| {split} | {_pct(s.get('per_patch_accuracy'))} | {_pct(s.get('per_image_accuracy'))} | {s.get('n_images')} |"
            )
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Attributes scans to the scanner models listed above and maps regions whose traces do not fit "
        "the predicted scanner. It knows only these classes: a scan from any other scanner is still "
        "assigned to one of them. Accuracy figures hold for data like the training data only.",
        "",
    ]
    return "\n".join(lines)
