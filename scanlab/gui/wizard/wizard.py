"""The training wizard: Collection -> Split -> Model -> Train -> Evaluate -> Save.

One :class:`WizardState` is shared by the pages; the collection scan and training
run on the wizard's own :class:`TaskRunner` (a background QThread), so the window
stays responsive and the main window's analyses never cancel a training run.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QWidget, QWizard

from scanlab.gui.task_runner import TaskRunner
from scanlab.gui.wizard.pages_data import CollectionPage, SplitPage
from scanlab.gui.wizard.pages_result import EvaluatePage, SavePage
from scanlab.gui.wizard.pages_train import ModelPage, TrainPage
from scanlab.gui.wizard.state import WizardState

PAGE_NAMES = ("collection", "split", "model", "train", "evaluate", "save")


class TrainingWizard(QWizard):
    """Turns a folder of reference scans into a validated model in the user's library.

    Signals
    -------
    model_saved(str)
        Path of the model saved to the library.
    open_scan_requested(str, str)
        The analyst clicked a misclassified scan on the Evaluate page: its path and
        the model file evaluated there ("" when the wizard holds none).
    """

    model_saved = Signal(str)
    open_scan_requested = Signal(str, str)

    def __init__(self, data_dir: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.resize(1000, 720)
        self.state = WizardState(data_dir=data_dir)
        self.runner = TaskRunner(self)
        self.pages = {
            "collection": CollectionPage(self.state, self.runner),
            "split": SplitPage(self.state),
            "model": ModelPage(self.state),
            "train": TrainPage(self.state, self.runner),
            "evaluate": EvaluatePage(self.state),
            "save": SavePage(self.state),
        }
        for name in PAGE_NAMES:
            self.addPage(self.pages[name])
        self.setButtonText(QWizard.WizardButton.FinishButton, "Save")
        self.pages["save"].model_saved.connect(self._on_save_page_model_saved)
        self.pages["evaluate"].open_scan_requested.connect(self._on_evaluate_open_scan_requested)
        if data_dir:
            self.pages["collection"].inspect()

    def page_named(self, name: str):
        """The page object called ``name`` (one of :data:`PAGE_NAMES`)."""
        return self.pages[name]

    @Slot(str)
    def _on_save_page_model_saved(self, path: str) -> None:
        self.model_saved.emit(path)

    @Slot(str, str)
    def _on_evaluate_open_scan_requested(self, path: str, model: str) -> None:
        self.open_scan_requested.emit(path, model)

    def shutdown(self) -> None:
        """Cancel any job and stop the worker thread."""
        self.runner.shutdown()

    def done(self, result: int) -> None:
        """Closing (Cancel, Save or the window's X) stops the worker first."""
        self.shutdown()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)
