"""Models > Model library...: list the user's models, show each card, rename, delete."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from scanlab.core.errors import ScanLabError
from scanlab.services.library import card_text, delete_model, list_library, rename_model
from scanlab.services.paths import user_models_dir


class ModelsDialog(QDialog):
    """The user's model library.

    Signals
    -------
    library_changed()
        A model was renamed or deleted (the main window refreshes its model list).
    """

    library_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model library")
        self.resize(900, 560)
        self.list = QListWidget()
        self.card = QTextBrowser()
        self.rename_button = QPushButton("Rename...")
        self.delete_button = QPushButton("Delete...")
        self.close_button = QPushButton("Close")
        self.where = QLabel(f"Library folder: {user_models_dir()}")
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        split = QSplitter()
        split.addWidget(self.list)
        split.addWidget(self.card)
        split.setSizes([280, 620])
        buttons = QHBoxLayout()
        buttons.addWidget(self.rename_button)
        buttons.addWidget(self.delete_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.where)
        lay.addWidget(split, 1)
        lay.addLayout(buttons)
        self.list.currentItemChanged.connect(self._on_list_current_item_changed)
        self.rename_button.clicked.connect(self._on_rename_clicked)
        self.delete_button.clicked.connect(self._on_delete_clicked)
        self.close_button.clicked.connect(self.accept)
        # replaced in tests (no modal dialogs there)
        self.ask_name = self._ask_name
        self.confirm_delete = self._confirm_delete
        self.reload()

    def reload(self, select: str | None = None) -> None:
        """Re-read the library folder."""
        self.list.clear()
        for m in list_library():
            it = QListWidgetItem(m["name"] + ("  (damaged)" if "error" in m else ""))
            it.setData(Qt.ItemDataRole.UserRole, m["path"])
            it.setToolTip(m["path"])
            self.list.addItem(it)
            if m["path"] == select:
                self.list.setCurrentItem(it)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        has = self.list.count() > 0
        self.rename_button.setEnabled(has)
        self.delete_button.setEnabled(has)
        if not has:
            self.card.setMarkdown("No models in the library yet: use Models > Train a model...")

    def current_path(self) -> str | None:
        """Path of the selected model."""
        it = self.list.currentItem()
        return it.data(Qt.ItemDataRole.UserRole) if it is not None else None

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_list_current_item_changed(self, cur: QListWidgetItem | None, _prev: QListWidgetItem | None) -> None:
        if cur is None:
            return
        try:
            self.card.setMarkdown(card_text(cur.data(Qt.ItemDataRole.UserRole)))
        except ScanLabError as e:
            self.card.setPlainText(str(e))

    def _ask_name(self, current: str) -> str | None:
        text, ok = QInputDialog.getText(self, "Rename model", "New name:", text=current)
        return text if ok else None

    def _confirm_delete(self, name: str) -> bool:
        ans = QMessageBox.question(self, "Delete model?", f"Delete the model '{name}' from the library?\n"
                                   "This cannot be undone.")
        return ans == QMessageBox.StandardButton.Yes

    @Slot()
    def _on_rename_clicked(self) -> None:
        path = self.current_path()
        if path is None:
            return
        new = self.ask_name(self.list.currentItem().text())
        if not new:
            return
        try:
            out = rename_model(path, new)
        except ScanLabError as e:
            QMessageBox.warning(self, "Rename failed", str(e))
            return
        self.reload(select=str(out))
        self.library_changed.emit()

    @Slot()
    def _on_delete_clicked(self) -> None:
        path = self.current_path()
        if path is None or not self.confirm_delete(self.list.currentItem().text()):
            return
        try:
            delete_model(path)
        except ScanLabError as e:
            QMessageBox.warning(self, "Delete failed", str(e))
            return
        self.reload()
        self.library_changed.emit()
