"""Fixtures for the desktop-app tests: offscreen Qt, a tiny random model, small scans."""

from __future__ import annotations

import os

# Before any Qt import: these tests never need a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from scanlab.core.engine.network import build_model  # noqa: E402
from scanlab.core.modelfile.store import make_manifest, save_model  # noqa: E402

CLASSES = ["Canon LiDE", "Epson V39", "HP ScanJet"]


@pytest.fixture(autouse=True, scope="module")
def _garbage_collected_in_the_gui_thread(qapp):
    """As in the app (scanlab.gui.app.collect_garbage_in_gui_thread): no collection may
    start in a runner thread and free a previous test's widgets there (a segfault seen
    in CI). Restored after each module, with one collection here, in the main thread."""
    import gc

    from pyqtgraph.util.garbage_collector import GarbageCollector

    collector = GarbageCollector(interval=0.5)
    yield
    collector.timer.stop()
    gc.enable()
    gc.collect()


def write_scan(path: Path, shape: tuple[int, int] = (192, 224), seed: int = 0) -> Path:
    """A small colourful RGB scan with a noisy pasted block."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 1.1) % 256, (yy * 1.3) % 256, ((xx + yy) * 0.6) % 256], -1).astype(
        np.uint8
    )
    img[h // 3 : h // 3 + 60, w // 3 : w // 3 + 70] = rng.integers(0, 255, (60, 70, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-weight 3-class model file."""
    torch.manual_seed(0)
    net = build_model(len(CLASSES))
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(net, make_manifest(net, CLASSES, name="tiny-random"), path)
    return str(path)


@pytest.fixture(scope="session")
def slow_scan(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A scan big enough that a stride-4 map takes seconds (for cancel tests)."""
    return str(write_scan(tmp_path_factory.mktemp("scans") / "slow.png", (512, 640), seed=1))


@pytest.fixture
def make_scan():
    """``make_scan(path, shape=(192, 224), seed=0)`` writes a small scan."""
    return write_scan


@pytest.fixture
def scan(tmp_path: Path) -> str:
    """A 192 x 224 scan."""
    return str(write_scan(tmp_path / "scan.png"))


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user models, caches or shipped default model leak into the tests."""
    monkeypatch.setenv("SCANLAB_DATA_DIR", str(tmp_path / "userdata"))
    monkeypatch.setenv("SCANLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(tmp_path / "no-default.safetensors"))


@pytest.fixture
def gui_settings(tmp_path: Path, qapp: object):
    """Settings in a per-test INI file, never the user's."""
    from PySide6.QtCore import QSettings

    from scanlab.gui.app import configure_pyqtgraph
    from scanlab.gui.settings import GuiSettings

    configure_pyqtgraph()
    return GuiSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def window(qtbot, gui_settings, tiny_model: str):
    """A shown main window using the tiny model and stride 16."""
    from scanlab.gui.main_window import MainWindow

    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    assert not win.runner._thread.isRunning(), "analysis thread left running"


@pytest.fixture
def wait_settled(qtbot):
    """``wait_settled(win)``: wait until no analysis runs or is due for any open scan."""

    def wait(win, timeout: int = 30_000) -> None:
        def settled() -> None:
            key = win.params_key()
            assert not win.runner.is_busy()
            assert not win.scheduler.recompute.isActive()
            assert all(not d.needs_analysis(key) for d in win.documents)

        qtbot.waitUntil(settled, timeout=timeout)

    return wait


@pytest.fixture
def case_path(tmp_path: Path, tiny_model: str, make_scan) -> Path:
    """A saved case holding one scan analysed with the tiny model."""
    from scanlab.core.case.casefile import new_case, save_case
    from scanlab.services.cases import add_evidence

    scan = make_scan(tmp_path / "q.png", (256, 256))
    c = new_case("Contract 7", "A. Analyst")
    add_evidence(c, scan, user="A. Analyst", model=tiny_model, stride=(16, 16))
    return save_case(c, tmp_path / "c.scanlab")


@pytest.fixture
def opened(qtbot, window, wait_settled, case_path):
    """The window with ``case_path`` open and its ROI layer ready."""
    assert window.cases.open_case_at(str(case_path))
    wait_settled(window)
    qtbot.waitUntil(lambda: window.cases.layer.enabled, timeout=10_000)
    return window
