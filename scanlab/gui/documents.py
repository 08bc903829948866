"""Open scans as plain data (no Qt): what the main window's list and views mirror.

A :class:`ScanDocument` remembers the last result and the parameters it was
computed with, so switching scans or parameters knows what must be recomputed and
what is merely redrawn (changing the mapped class never recomputes the network).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scanlab.core.errors import ScanLabError
from scanlab.core.io.containers import CONTAINER_SUFFIXES, expand, find_evidence, is_ref
from scanlab.core.io.imaging import is_image_path
from scanlab.services.analysis import ATTRIBUTION, UNKNOWN, AnalysisResult
from scanlab.services.layer_runs import LayerRun, layer_of

ParamsKey = tuple[str | None, int, int, str]
"""(model spec, sub-image size, stride, device): what a result depends on."""


@dataclass
class ScanDocument:
    """One open scan and what is known about it."""

    path: str
    result: AnalysisResult | None = None
    result_key: ParamsKey | None = None
    error: str | None = None
    error_key: ParamsKey | None = None
    pending_id: int | None = None  # request id of the analysis running for it
    map_label: str | None = None  # class mapped in the view (None: the predicted one)
    pyramid: list[np.ndarray] = field(default_factory=list, repr=False)  # display levels
    preview: np.ndarray | None = field(default=None, repr=False)  # decoded scan before its result
    _maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # model-free layers computed on this scan, by registry name (they depend on the pixels only,
    # so a new analysis with other parameters keeps them)
    layers: dict[str, LayerRun] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """File name for lists and titles."""
        return Path(self.path).name

    def needs_analysis(self, key: ParamsKey) -> bool:
        """True when neither a result nor an error exists for ``key``."""
        if self.result is not None and self.result_key == key:
            return False
        return not (self.error is not None and self.error_key == key)

    def set_result(
        self, result: AnalysisResult, key: ParamsKey, pyramid: list[np.ndarray] | None = None
    ) -> None:
        """Store a finished analysis (clears any previous error and cached maps)."""
        self.result, self.result_key = result, key
        self.pyramid = pyramid or []
        self.preview = None
        self.error = self.error_key = None
        self.pending_id = None
        self._maps = {}
        if result.reliability is not None:
            self._maps[result.map_label] = result.reliability
        if self.map_label is not None and self.map_label not in result.classes + [ATTRIBUTION, UNKNOWN] \
                and layer_of(self.map_label) is None:
            self.map_label = None

    def set_preview(self, pixels: np.ndarray, pyramid: list[np.ndarray]) -> None:
        """The decoded scan, shown while its first analysis runs."""
        if self.result is None:
            self.preview, self.pyramid = pixels, pyramid

    def set_error(self, message: str, key: ParamsKey) -> None:
        """Store a failed analysis; an older result (other parameters) stays visible."""
        self.error, self.error_key = message, key
        self.pending_id = None

    def shown_label(self) -> str | None:
        """The class whose map is shown: the chosen one, else the predicted one."""
        if self.result is None:
            return None
        return self.map_label or self.result.label

    def shown_map(self) -> np.ndarray | None:
        """Reliability map of :meth:`shown_label` if it is computed already, else ``None``."""
        label = self.shown_label()
        if layer_of(label) is not None:
            run = self.layers.get(layer_of(label))
            return None if run is None else run.score
        return None if label is None else self._maps.get(label)

    def map_of(self, label: str) -> np.ndarray | None:
        """Reliability map of any class (computed once, O(pixels); thread-safe to call).

        One map besides the predicted class's is kept: a 16 MP map is 64 MB.
        """
        result = self.result
        if result is None or result.analysis.map_grid is None:
            return None
        maps = self._maps
        if label in maps:
            return maps[label]
        arr = result.map_for(label)
        keep = {k: v for k, v in maps.items() if k == result.map_label}
        keep[label] = arr
        if self.result is result:
            self._maps = keep
        return arr

    def status_text(self, key: ParamsKey) -> str:
        """Short state for the list's tooltip."""
        if self.pending_id is not None:
            return "analysing..."
        if self.error is not None and self.error_key == key:
            return f"failed: {self.error}"
        if self.result is not None:
            stale = "" if self.result_key == key else " (other parameters)"
            return f"{self.result.answer}{stale}"
        return "waiting"


def collect_paths(items: list[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """Expand dropped/opened paths into image files.

    Folders contribute every image below them; files with other suffixes and
    folders without images produce a message instead (the rest still load).

    Returns
    -------
    files : list of str
        Image paths, in the given order, without duplicates.
    messages : list of str
        One line per item that was skipped.
    """
    files: list[str] = []
    messages: list[str] = []
    for item in items:
        p = Path(item)
        if is_ref(item):  # one page of a PDF / multi-page TIFF (e.g. from the triage table): load reports problems
            files.append(str(item))
        elif p.is_dir():
            found = find_evidence(p)
            if not found:
                messages.append(f"{p}: folder contains no images (jpg, png, tif, bmp, pdf)")
            files.extend(str(f) for f in found)
        elif not p.exists():
            messages.append(f"{p}: file not found")
        elif not is_image_path(p) and p.suffix.lower() != ".pdf":
            messages.append(f"{p}: not an image ScanLab reads (jpg, png, tif, bmp, pdf)")
        elif p.suffix.lower() in CONTAINER_SUFFIXES:  # one document per embedded image / page
            try:
                for it in expand(p):
                    if it.empty is not None:
                        messages.append(f"{it.ref}: {it.empty}")
                    else:
                        files.append(it.ref)
            except ScanLabError as e:
                messages.append(str(e))
        else:
            files.append(str(p))
    seen: set[str] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]
    return unique, messages
