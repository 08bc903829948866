"""``scanlab wizard DATA --screenshots DIR``: drive every page headless with the defaults.

Each page is shown, allowed to settle, grabbed (``QWidget.grab``) and saved as
``DIR/NN-<page>.png``; training uses the default recipe for ``epochs`` epochs
(1 by default), and the model is saved to the user's library at the end, exactly
as clicking through the wizard would.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QApplication

from scanlab.core.errors import ScanLabError
from scanlab.gui.wizard.wizard import PAGE_NAMES, TrainingWizard


def _wait(cond, timeout_s: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        QApplication.processEvents()
        if time.monotonic() - t0 > timeout_s:
            raise ScanLabError(f"wizard: timed out waiting for {what}")
        time.sleep(0.01)
    for _ in range(5):  # let the last updates paint
        QApplication.processEvents()


def _shot(wiz: TrainingWizard, out: Path, k: int, name: str) -> Path:
    p = out / f"{k + 1:02d}-{name}.png"
    if not wiz.grab().save(str(p), "PNG"):
        raise ScanLabError(f"{p}: cannot write the screenshot")
    return p


def drive_wizard(
    data_dir: str, out_dir: str, *, epochs: int = 1, base: str | None = None, timeout_s: float = 1800,
    name: str | None = None,
) -> dict:
    """Run the wizard from the first page to a saved model, one PNG per page.

    Returns
    -------
    dict
        ``screenshots`` (paths), ``model`` (saved path), ``metrics`` of the trained model.

    Raises
    ------
    ScanLabError
        A page cannot be completed (its message says why), or a PNG cannot be written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wiz = TrainingWizard(data_dir)
    wiz.resize(1100, 760)
    wiz.show()
    shots: list[str] = []
    try:
        col = wiz.page_named("collection")
        _wait(lambda: not col.is_busy(), timeout_s, "the collection scan")
        shots.append(str(_shot(wiz, out, 0, "collection")))
        if not col.isComplete():
            raise ScanLabError(f"{data_dir}: " + (col.status.text().replace("<b>", "").replace("</b>", "")))
        for k, name_ in enumerate(PAGE_NAMES[1:], start=1):
            if name_ == "train":
                wiz.state.config = replace(wiz.state.config, epochs=epochs)
            wiz.next()
            _wait(lambda: True, 1, "")
            page = wiz.currentPage()
            if name_ == "model" and base is not None:
                i = page.base.findData(base)
                page.base.setCurrentIndex(i if i >= 0 else page.base.count() - 1)
                page.epochs.setValue(epochs)
            elif name_ == "model":
                page.epochs.setValue(epochs)
            if name_ == "train":
                page.start()
                _wait(lambda p=page: not p.is_running(), timeout_s, "training")
                if not page.isComplete():
                    shots.append(str(_shot(wiz, out, k, name_)))
                    raise ScanLabError(f"{data_dir}: training failed: " + page.info.text().replace("<b>", "")
                                       .replace("</b>", ""))
            if name_ == "save" and name:
                page.name.setText(name)
            shots.append(str(_shot(wiz, out, k, name_)))
            if name_ == "split" and not page.isComplete():
                raise ScanLabError(f"{data_dir}: {page.error.text()}")
        save = wiz.page_named("save")
        save.confirm_overwrite = lambda _p: True
        if not save.save():
            raise ScanLabError(save.error.text())
        return {"screenshots": shots, "model": save.saved_path,
                "metrics": (wiz.state.manifest or {}).get("metrics")}
    finally:
        wiz.shutdown()
        wiz.close()
        wiz.deleteLater()
