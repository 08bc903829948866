"""Model files: weights plus manifest in one safetensors file.

Layout: a single ``.safetensors`` file whose tensors are the network's
``state_dict`` and whose metadata holds one key, ``scanlab_manifest``, a JSON
manifest (classes, architecture and version, patch size, training recipe and
data summary, metrics, library versions, date, weights hash). safetensors
stores raw tensors and a JSON header only, so loading never executes code
from the file (unlike pickle-based ``torch.load``). Further tensors named
``open_set.*`` (open-set statistics) may sit beside the weights; the weights hash
covers them too. Every size in the file is bounded before anything is
allocated and the manifest is validated against a JSON Schema
(:mod:`scanlab.core.modelfile.schema`); weights must be finite. Format v2 requires
``weights_sha256``; v1 files (hash optional) keep loading.

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
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import scanlab
from scanlab.core.engine.network import (
    ARCH_NAME,
    ARCH_VERSION,
    PATCH,
    STRIDE,
    ScannerNet,
    count_parameters,
)
from scanlab.core.errors import ScanLabError
from scanlab.core.io.fileio import atomic_write_bytes, check_writable
from scanlab.core.modelfile.coverage_card import coverage_card_lines
from scanlab.core.modelfile.delivery_card import delivery_card_lines
from scanlab.core.modelfile.schema import (
    MAX_HEADER_BYTES,
    MAX_MODEL_BYTES,
    HeaderError,
    parse_header,
    schema_problem,
)

FORMAT = "scanlab-model"
FORMAT_VERSION = 2
META_KEY = "scanlab_manifest"
EXTRA_PREFIX = "open_set."  # extra tensors stored beside the weights (docs/formats.md section 2)


class ModelFileError(ScanLabError):
    """A model file is missing, corrupt, incompatible or mismatched."""


@dataclass
class LoadedModel:
    """A network ready for inference plus its manifest and any extra tensors."""

    net: ScannerNet
    manifest: dict[str, Any]
    path: str
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

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
    """SHA-256 over tensor names, dtypes, shapes and bytes, in sorted name order.

    ``state`` holds every tensor of the file: the network's and the extras.
    """
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


def save_model(
    net: ScannerNet,
    manifest: dict[str, Any],
    path: str | os.PathLike,
    extras: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Save weights + manifest atomically to exactly ``path``; returns the stored manifest.

    ``extras`` are stored as further tensors in the same file; their names must
    begin with ``open_set.`` (the only extra family the loader knows). The
    manifest's ``weights_sha256`` covers the network's tensors and the extras.
    """
    p = check_writable(path, what="model file")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    for k, v in (extras or {}).items():
        if not k.startswith(EXTRA_PREFIX) or k in state:
            raise ValueError(f"extra tensor name {k!r} must begin with {EXTRA_PREFIX!r}")
        state[k] = v.detach().cpu().contiguous()
    man = dict(manifest)
    man["format_version"] = FORMAT_VERSION
    man["weights_sha256"] = weights_digest(state)
    man.pop("_file_sha256", None)
    data = st_save(state, metadata={META_KEY: json.dumps(man, sort_keys=True)})
    atomic_write_bytes(p, data)
    return man


def _check_path(p: Path) -> int:
    if not p.exists():
        raise ModelFileError(f"{p}: model file not found")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a folder, not a ScanLab model file")
    st = p.stat()
    if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero would block or never end
        raise ModelFileError(f"{p}: not a regular file (a device, pipe or socket)")
    size = st.st_size
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(f"{p}: {size} bytes is larger than any ScanLab model ({MAX_MODEL_BYTES} bytes at most)")
    return size


def _corrupt(p: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{p}: not a ScanLab model file or corrupt ({why})")


def validate_manifest(man: Any, p: Path) -> dict[str, Any]:
    """Check a decoded manifest (schema, format, version, architecture); return it.

    Raises
    ------
    ModelFileError
        With the JSON path of the first violation.
    """
    if not isinstance(man, dict):
        raise ModelFileError(f"{p}: manifest is not a JSON object")
    if man.get("format") != FORMAT:
        raise ModelFileError(f"{p}: not a ScanLab model (format {str(man.get('format'))[:40]!r})")
    ver = man.get("format_version")
    if isinstance(ver, int) and not isinstance(ver, bool) and ver > FORMAT_VERSION:
        raise ModelFileError(f"{p}: model format v{ver} is newer than this ScanLab reads (v{FORMAT_VERSION})")
    problem = schema_problem(man)
    if problem:
        if "classes" in problem.split(":")[0]:
            problem = f"class list invalid {problem}"
        raise ModelFileError(f"{p}: manifest invalid {problem}")
    arch = man["architecture"]
    if arch["name"] != ARCH_NAME or arch["version"] != ARCH_VERSION:
        raise ModelFileError(
            f"{p}: architecture {arch['name'][:40]} v{arch['version']} is not supported "
            f"(this ScanLab runs {ARCH_NAME} v{ARCH_VERSION})"
        )
    if ver >= 2 and not man.get("weights_sha256"):
        raise ModelFileError(f"{p}: format v{ver} model without weights_sha256 (required since v2)")
    return man


def _manifest_from_meta(meta: dict[str, str], p: Path) -> dict[str, Any]:
    if META_KEY not in meta:
        raise ModelFileError(f"{p}: safetensors file without a ScanLab manifest")
    try:
        man = json.loads(meta[META_KEY])
    except (json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"{p}: manifest is not valid JSON") from None
    return validate_manifest(man, p)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a model file's manifest (the header only, size-bounded).

    Raises
    ------
    ModelFileError
        Missing, oversized, corrupt or foreign files, and schema violations.
    """
    p = Path(path)
    size = _check_path(p)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            if 2 <= n <= MAX_HEADER_BYTES:
                head += f.read(n)
    except OSError as e:
        raise ModelFileError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        meta, _ = parse_header(head, size)
    except HeaderError as e:
        raise _corrupt(p, str(e)) from None
    return _manifest_from_meta(meta, p)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """Load a model file (no code execution), verify it and return the eval-mode network.

    The file is read once; its SHA-256, the header checks, the tensors and the
    weights hash all come from those same bytes. Tensors named ``open_set.*``
    go to :attr:`LoadedModel.extras`, the rest must fit the network exactly.

    Raises
    ------
    ModelFileError
        Missing, corrupt, foreign, other-architecture-version, non-finite or
        inconsistent files.
    """
    p = Path(path)
    _check_path(p)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{p}: cannot read ({e.strerror or e})") from None
    if len(data) > MAX_MODEL_BYTES:  # grew after the stat
        raise ModelFileError(f"{p}: larger than any ScanLab model ({MAX_MODEL_BYTES} bytes at most)")
    try:
        meta, _ = parse_header(data)
    except HeaderError as e:
        raise _corrupt(p, str(e)) from None
    man = _manifest_from_meta(meta, p)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as e:
        raise ModelFileError(f"{p}: corrupt weights ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{p}: tensor {k[:60]} holds NaN or infinite values")
    expect = man.get("weights_sha256")
    if expect and weights_digest(tensors) != expect:
        raise ModelFileError(f"{p}: weights do not match the manifest's hash (file damaged or edited)")
    extras = {k: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    net = ScannerNet(len(man["classes"]), width=int(man["architecture"]["width"]))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"{p}: weights do not fit the manifest's architecture ({str(e).splitlines()[0][:120]})") from None
    ow, ob = extras.get("open_set.other_weight"), extras.get("open_set.other_bias")
    if (ow is not None and ow.numel() != net.feature_channels) or (ob is not None and ob.numel() != 1):
        raise ModelFileError(f"{p}: the open_set.other_* tensors do not fit the network "
                             f"({net.feature_channels} features, one bias)")
    gp, gc = extras.get("open_set.gauss_proj"), extras.get("open_set.gauss_centres")
    c, ns = net.feature_channels, net.n_classes
    if (gp is not None and tuple(gp.shape) != (c, c)) or (gc is not None and tuple(gc.shape) != (ns, c)):
        raise ModelFileError(f"{p}: the open_set.gauss_* tensors do not fit the network "
                             f"({c} x {c} projection, {ns} x {c} centres)")
    man["_file_sha256"] = hashlib.sha256(data).hexdigest()
    return LoadedModel(net.to(device).eval(), man, str(p.resolve()), extras)


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
    lines += _evidence_card(m)
    return "\n".join(lines)


def _evidence_card(m: dict[str, Any]) -> list[str]:
    """Card sections on calibration, unknown scanners and what the model knows (manifest v2 keys)."""
    cal = m.get("calibration") or {}
    os_ = m.get("open_set") or {}
    ti = m.get("training_input") or {}
    lines = ["", "## Calibration", ""]
    if cal.get("calibrated"):
        lines += [
            f"- Temperature scaling on the validation split: T = {cal.get('temperature')} "
            f"({cal.get('n_windows')} windows with evidence of {cal.get('n_images')} images)",
            f"- ECE ({cal.get('n_bins')} bins, windows): {cal.get('ece_before')} before, {cal.get('ece_after')} after; "
            f"NLL {cal.get('nll_before')} -> {cal.get('nll_after')}",
            "- Probabilities shown or written by ScanLab are the calibrated ones.",
        ]
    else:
        lines.append(f"- **Uncalibrated**: {cal.get('reason') or 'this model file has no calibration'}. "
                     "Probabilities are raw softmax means and every verdict says `calibrated: false`.")
    lines += ["", "## Unknown scanners (open set)", ""]
    if os_.get("method"):
        th = os_.get("thresholds") or {}
        lines += [
            f"- Method: `{os_['method']}` ({', '.join(f'{k}={v}' for k, v in (os_.get('params') or {}).items())})",
            "- Thresholds: " + ", ".join(f"{k} = {v}" for k, v in th.items()),
            f"- Unknown threshold rule: {os_.get('threshold_rule', 'n/a')}, fitted on {os_.get('n_images')} validation images",
        ]
        if th.get("mean_feature_check"):
            lines.append(f"- Mean-feature check: {os_.get('mean_feature_check_rule') or 'on'}")
        ts, neg = os_.get("threshold_samples") or {}, os_.get("negatives") or {}
        if ts.get("n_outlier_designs"):
            lines.append(f"- Threshold samples: {ts.get('n_val_windows')} validation windows, "
                         f"{ts['n_outlier_designs']} held-out virtual outlier designs "
                         f"({ts.get('outlier_rejected_at_threshold')} of them rejected at the threshold)")
        if neg.get("n_images"):
            lines.append(f"- The lab's own negative scans held out: {neg.get('rejected')} of {neg['n_images']} rejected")
    else:
        lines.append(f"- **No unknown-scanner detection**: {os_.get('reason') or 'this model file has no open-set scorer'}. "
                     "Verdicts can be `attributed` or `inconclusive`, never `unknown`.")
    dpi = ti.get("dpi")
    lines += [
        "",
        "## What this model knows and does not",
        "",
        f"- Training scans: {'dpi ' + str(dpi[0]) + '-' + str(dpi[1]) if dpi else 'no resolution recorded'}, "
        f"bit depths {ti.get('bit_depths', 'n/a')}.",
    ]
    if ti.get("formats"):  # recorded from issue 17 on
        jq = ti.get("jpeg_quality")
        lines.append("- Training formats: " + ", ".join(f"{k} {v}" for k, v in ti["formats"].items())
                     + (f"; JPEG quality {jq[0]}-{jq[1]} ({', '.join(ti.get('jpeg_subsampling') or [])})" if jq else "")
                     + ". A questioned JPEG outside this range gets a warning.")
    lines += coverage_card_lines(m)
    lines += delivery_card_lines(m) + [""]
    if m.get("demonstration"):
        lines.append(
            "- **Demonstration model**: trained only on virtual (simulated) scanners. It has never seen a real "
            "scanner; to attribute real scans, train or fine-tune on the lab's own reference scans "
            "(`scanlab train REFERENCE_DIR -o lab.safetensors`, one folder per scanner)."
        )
    lines += [
        "- Attributes scans to the scanner models listed above and maps regions whose traces do not fit the "
        "predicted scanner. A scan from another scanner is answered `unknown` only as far as the open-set "
        "scorer separates it (measured figures in the benchmarks); otherwise `inconclusive` or, at worst, a "
        "known name. Accuracy figures hold for data like the training data only.",
        "",
    ]
    return lines
