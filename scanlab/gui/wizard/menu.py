"""The main window's Models menu: Train a model..., Model library... (kept apart from menus.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QEvent, QObject, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from scanlab.core.errors import ScanLabError
from scanlab.services.library import evaluation_copy
from scanlab.services.viewstate import ViewState


class ModelsHost(Protocol):
    """What the Models menu asks of the window."""

    state: ViewState

    def refresh_models(self, current: str | None = None) -> None: ...
    def post_message(self, text: str, *, error: bool = False) -> None: ...
    def open_paths(self, paths: list[str]) -> object: ...
    def use_model(self, path: str) -> None: ...


class ModelsMenu(QObject):
    """Opens the wizard and the library dialog; refreshes the window's model list after changes.

    ``window`` is only the dialogs' parent and the widget whose close stops a training.
    """

    def __init__(self, menu: QMenu, host: ModelsHost, window: QWidget) -> None:
        super().__init__(window)
        self.window, self.host = window, host
        self.wizard = None
        self.dialog = None
        self.train_action = QAction("&Train a model...", window)
        self.library_action = QAction("Model &library...", window)
        menu.addActions([self.train_action, self.library_action])
        self.train_action.triggered.connect(self.open_wizard)
        self.library_action.triggered.connect(self.open_library)
        window.installEventFilter(self)  # stop a running training when the window closes

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """On the main window's close, cancel the wizard's job and stop its thread."""
        # getattr: Qt can still deliver events while the Python wrapper is being torn down
        # (a window closed from a script), when its attributes are already gone
        wizard = getattr(self, "wizard", None)
        if obj is getattr(self, "window", None) and event.type() == QEvent.Type.Close and wizard is not None:
            wizard.shutdown()
        return False

    @Slot()
    def open_wizard(self, data_dir: str = "") -> object:
        """Show the training wizard (one at a time)."""
        from scanlab.gui.wizard.wizard import TrainingWizard

        if self.wizard is None:
            self.wizard = TrainingWizard(data_dir if isinstance(data_dir, str) else "", self.window)
            self.wizard.model_saved.connect(self._on_wizard_model_saved)
            self.wizard.open_scan_requested.connect(self._on_wizard_open_scan_requested)
            self.wizard.finished.connect(self._on_wizard_finished)
        self.wizard.show()
        self.wizard.raise_()
        return self.wizard

    @Slot()
    def open_library(self) -> object:
        """Show the Models dialog."""
        from scanlab.gui.wizard.models_dialog import ModelsDialog

        if self.dialog is None:
            self.dialog = ModelsDialog(self.window)
            self.dialog.library_changed.connect(self._on_dialog_library_changed)
        self.dialog.reload()
        self.dialog.show()
        return self.dialog

    @Slot(str)
    def _on_wizard_model_saved(self, path: str) -> None:
        self.host.refresh_models(self.host.state.model)
        self.host.post_message(f"Model saved to the library: {path}")
        if self.dialog is not None:
            self.dialog.reload(select=path)

    @Slot(str, str)
    def _on_wizard_open_scan_requested(self, path: str, model: str) -> None:
        """Open a misclassified scan with the model the wizard evaluated; the wizard stays in front."""
        name = Path(path).name
        if model:
            try:
                copy = evaluation_copy(model, self._wizard_model_name())
            except ScanLabError as e:
                self.host.post_message(f"{name}: cannot use the wizard's model ({e}); not opened", error=True)
                self._keep_wizard_in_front()
                return
            self.host.use_model(str(copy))  # selects it in Controls > Model: the window analyses with it
            self.host.post_message(f"{name}: analysed with the model the wizard evaluated (not saved to the "
                                   f"library yet), listed as {copy.stem!r} in Controls > Model: {copy}")
        else:
            self.host.post_message(f"{name}: the wizard holds no trained model file; analysed with the "
                                   "model selected in Controls > Model", error=True)
        self.host.open_paths([path])
        self._keep_wizard_in_front()

    def _wizard_model_name(self) -> str:
        man = (self.wizard.state.manifest or {}) if self.wizard is not None else {}
        return str(man.get("name") or "model")

    def _keep_wizard_in_front(self) -> None:
        # the analyst goes on clicking through the list: the wizard, not the window, keeps focus
        if self.wizard is not None:
            self.wizard.raise_()
            self.wizard.activateWindow()

    @Slot(int)
    def _on_wizard_finished(self, _result: int) -> None:
        self.wizard.deleteLater()
        self.wizard = None

    @Slot()
    def _on_dialog_library_changed(self) -> None:
        self.host.refresh_models(self.host.state.model)
