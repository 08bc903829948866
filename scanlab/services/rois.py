"""ROI edits as service commands, shared by the CLI (``scanlab case roi``) and the app.

Every change of a region of interest goes through a function here: it is logged in
the case's audit chain, and every id comes from one allocator
(:meth:`scanlab.core.case.casefile.Evidence.next_roi_id`). The app's ROI layer is a
view of :class:`RoiCommands`. Call these on the thread that owns the case.
"""

from __future__ import annotations

import copy
from typing import Any

from scanlab.core.case.casefile import Case
from scanlab.core.case.rois import ROI, VERDICTS
from scanlab.core.errors import ScanLabError
from scanlab.services.cases import compute_stats, get_evidence


def add_roi(case: Case, eid: str, roi: ROI, *, user: str, with_stats: bool = True) -> ROI:
    """Store an ROI; its id comes from the evidence's one allocator (:meth:`Evidence.next_roi_id`).

    An ROI that already carries an id no other ROI of the evidence has keeps it (an
    undone delete comes back under its old number). ``with_stats=False`` leaves the
    statistics to the caller (the app computes them on a worker).
    """
    e = get_evidence(case, eid)
    roi = copy.deepcopy(roi)
    if roi.id <= 0 or any(r.id == roi.id for r in e.rois):
        roi.id = e.next_roi_id()
    if with_stats:
        roi.stats = compute_stats(e, roi)
    if roi.verdict is not None:
        roi.reviewed = True
    e.rois.append(roi)
    e.rois.sort(key=lambda r: r.id)
    case.log(user, "roi_added", roi.to_dict(), f"{e.eid}: ROI {roi.id} ({roi.kind})")
    return roi


def move_roi(case: Case, eid: str, roi_id: int, points: list[tuple[float, float]], *, user: str) -> ROI:
    """Replace an ROI's outline (move, resize, vertex drag); its statistics become stale (empty)."""
    e = get_evidence(case, eid)
    roi = next((r for r in e.rois if r.id == roi_id), None)
    if roi is None:
        raise ScanLabError(f"evidence {e.eid} has no ROI {roi_id}")
    roi.points = [(float(r), float(c)) for r, c in points]
    roi.stats = {}
    case.log(user, "roi_changed", roi.to_dict(), f"{e.eid}: ROI {roi.id} changed")
    return roi


def set_roi_stats(case: Case, eid: str, roi_id: int, points: list[tuple[float, float]],
                  stats: dict[str, Any]) -> bool:
    """Attach statistics computed elsewhere, if the ROI still has the outline they were computed for."""
    e = case.evidence.get(eid)
    roi = next((r for r in e.rois if r.id == roi_id), None) if e is not None else None
    if roi is None or [tuple(p) for p in roi.points] != [tuple(p) for p in points]:
        return False
    roi.stats = stats
    return True


def review_roi(case: Case, eid: str, roi_id: int, *, user: str, verdict: str | None = None,
               note: str | None = None) -> ROI:
    """Set an ROI's verdict and/or note; it then counts as reviewed."""
    e = get_evidence(case, eid)
    roi = next((r for r in e.rois if r.id == roi_id), None)
    if roi is None:
        raise ScanLabError(f"evidence {e.eid} has no ROI {roi_id}")
    if verdict is not None:
        if verdict not in VERDICTS:
            raise ScanLabError(f"verdict must be one of: {', '.join(VERDICTS)}")
        roi.verdict = verdict
    if note is not None:
        roi.note = note
    roi.reviewed = roi.verdict is not None
    case.log(user, "roi_reviewed", roi.to_dict(), f"{e.eid}: ROI {roi.id} -> {roi.verdict}")
    return roi


def remove_roi(case: Case, eid: str, roi_id: int, *, user: str) -> None:
    """Delete an ROI (the audit log keeps that it existed)."""
    e = get_evidence(case, eid)
    before = len(e.rois)
    e.rois = [r for r in e.rois if r.id != roi_id]
    if len(e.rois) == before:
        raise ScanLabError(f"evidence {e.eid} has no ROI {roi_id}")
    case.log(user, "roi_removed", {"eid": e.eid, "id": roi_id}, f"{e.eid}: ROI {roi_id} removed")


class RoiCommands:
    """The ROIs of one evidence file, edited only through this module's commands.

    The app's ROI layer is a view of this object (``scanlab.gui.roi_layer.RoiStore``):
    every edit is logged in the audit chain and every id comes from
    :meth:`Evidence.next_roi_id`. Statistics are left to the caller (a worker).
    Use it on the thread that owns the case.
    """

    def __init__(self, case: Case, eid: str, user: str) -> None:
        self.case, self.eid, self.user = case, eid, user

    def rois(self) -> list[ROI]:
        """Copies of the evidence's ROIs."""
        return copy.deepcopy(get_evidence(self.case, self.eid).rois)

    def add(self, roi: ROI) -> ROI:
        """:func:`add_roi` without statistics; returns a copy."""
        return copy.deepcopy(add_roi(self.case, self.eid, roi, user=self.user, with_stats=False))

    def remove(self, roi_id: int) -> None:
        """:func:`remove_roi`."""
        remove_roi(self.case, self.eid, roi_id, user=self.user)

    def move(self, roi_id: int, points: list[tuple[float, float]]) -> ROI:
        """:func:`move_roi`; returns a copy."""
        return copy.deepcopy(move_roi(self.case, self.eid, roi_id, points, user=self.user))
