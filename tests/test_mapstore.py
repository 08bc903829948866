import h5py
import numpy as np
import pytest

from scanlab.core.errors import ScanLabError
from scanlab.core.io.mapstore import StoredWindows, read_windows, write_windows


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    w = StoredWindows(np.arange(0, 40, 8), np.arange(0, 64, 8), (64, 64), (8, 8),
                      rng.random((5, 8, 3), dtype=np.float32), ["a", "b", "c"],
                      rng.random((5, 8)) > 0.3, rng.random((5, 8), dtype=np.float32), True)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        write_windows(f.create_group("windows"), w)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        r = read_windows(f["windows"])
    assert r.classes == ["a", "b", "c"] and r.sub == (64, 64) and r.stride == (8, 8) and r.calibrated
    np.testing.assert_array_equal(r.probs, w.probs)
    np.testing.assert_array_equal(r.evidence, w.evidence)
    np.testing.assert_array_equal(r.ys, w.ys)


def test_damaged_group_is_a_scanlab_error(tmp_path):
    with h5py.File(tmp_path / "m.h5", "w") as f:
        g = f.create_group("windows")
        g.create_dataset("ys", data=np.arange(3))
    with h5py.File(tmp_path / "m.h5", "r") as f, pytest.raises(ScanLabError, match="damaged"):
        read_windows(f["windows"])


def test_shape_mismatch_refused_on_write(tmp_path):
    w = StoredWindows(np.arange(3), np.arange(4), (64, 64), (4, 4), np.zeros((3, 5, 2), np.float32), ["a", "b"])
    with h5py.File(tmp_path / "m.h5", "w") as f, pytest.raises(ValueError):
        write_windows(f.create_group("w"), w)
