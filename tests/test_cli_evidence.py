"""Verdict keys, no-evidence handling, ``map --what`` outputs and evaluate with unknown folders (CLI)."""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from scanlab.cli import main


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


KEYS = {"verdict", "confidence", "calibrated", "vote_fraction", "vote_interval", "unknown_score", "thresholds",
        "reason", "n_no_evidence", "warnings"}


def test_small_collection_gives_an_uncalibrated_model_and_says_so(capsys, trained_model, fresh_tree):
    from scanlab.core.modelfile.store import model_card, read_manifest

    m = read_manifest(trained_model)  # 1 validation image per class (16 windows): below both minimums
    assert m["calibration"]["calibrated"] is False and "at least 3" in m["calibration"]["reason"]
    assert "fewer than 32 validation windows" in m["calibration"]["reason"]
    # the open set does not need 3 per class: its threshold comes from windows and outliers
    # (gauss-image: fitted on the training windows, its threshold from the cross-fitted training images)
    assert m["open_set"]["method"] == "gauss-image" and "cross-fitted" in m["open_set"]["threshold_rule"]
    assert "Uncalibrated" in model_card(m)
    img = sorted(fresh_tree.glob("scanner_1/*.png"))[0]
    rc, out, _ = run(capsys, "classify", img, "-m", trained_model, "--json")
    e = json.loads(out)["images"][0]
    assert rc == 0 and set(e) >= KEYS and e["calibrated"] is False and e["unknown_score"] is not None
    assert e["verdict"] == "attributed" and e["label"] == "scanner_1"
    lo, hi = e["vote_interval"]
    assert lo <= e["vote_fraction"] <= hi and e["n_no_evidence"] == 0


def _constant_model(path, bias: list[float]):
    """A random trunk with a zeroed head: every window gets softmax(bias), whatever the content."""
    import torch
    from modeltools import write_random_model

    from scanlab.core.modelfile.store import load_model, save_model

    lm = load_model(write_random_model(path, ["a", "b", "c"]))
    with torch.no_grad():
        lm.net.fc.weight.zero_()
        lm.net.fc.bias.copy_(torch.tensor(bias))
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    save_model(lm.net, man, path)  # a file without calibration or open-set keys, like an old one
    return path


@pytest.mark.parametrize("bias,verdict,label,confidence", [
    ([0.0, 4.0, 0.0], "attributed", "b", math.exp(4) / (math.exp(4) + 2)),
    ([0.0, 0.0, 0.0], "inconclusive", "a", 1 / 3),  # unanimous (ties go to the first class) but p = 1/3
])
def test_old_model_without_evidence_keys_loads_and_is_uncalibrated(capsys, tmp_path, fresh_tree, bias, verdict,
                                                                   label, confidence):
    model = _constant_model(tmp_path / "old.safetensors", bias)
    img = sorted(fresh_tree.glob("scanner_0/*.png"))[0]
    rc, out, _ = run(capsys, "classify", img, "-m", model, "--json")
    r = json.loads(out)
    e = r["images"][0]
    assert rc == 0 and e["calibrated"] is False and r["model"]["calibrated"] is False
    assert e["unknown_score"] is None and e["n_no_evidence"] == 0
    assert e["verdict"] == verdict and e["label"] == label and e["confidence"] == pytest.approx(confidence, abs=1e-5)
    assert e["vote_fraction"] == 1.0
    if verdict == "inconclusive":
        assert e["reason"] == "confidence 0.33 is below 0.50"


def test_blank_page_and_black_frame_are_inconclusive(capsys, tmp_path, trained_model):
    Image.new("RGB", (256, 256), (255, 255, 255)).save(tmp_path / "blank.png")
    Image.new("RGB", (256, 256), (0, 0, 0)).save(tmp_path / "black.png")
    rc, out, _ = run(capsys, "classify", tmp_path / "blank.png", tmp_path / "black.png", "-m", trained_model, "--json")
    assert rc == 0
    for e in json.loads(out)["images"]:
        assert e["verdict"] == "inconclusive" and "evidence" in e["reason"]
        assert e["label"] is None and e["n_patches"] == 0 and e["n_no_evidence"] == 16
        assert e["confidence"] is None  # no label, so no probability of one


def test_map_what_class_and_no_evidence_in_every_format(capsys, tmp_path, trained_model, fresh_tree):
    src = sorted(fresh_tree.glob("scanner_0/*.png"))[1]  # 256 x 272
    px = np.asarray(Image.open(src).convert("RGB")).copy()
    px[:, 160:] = 255  # right part: clipped paper white
    img = tmp_path / "half.png"
    Image.fromarray(px).save(img)
    rc, js, _ = run(capsys, "map", img, "-m", trained_model, "--stride", "8", "-o", tmp_path / "r.npy", "--json")
    meta = json.loads(js)
    rel = np.load(tmp_path / "r.npy")
    assert rc == 0 and meta["what"] == "reliability" and 0.2 < meta["no_evidence_fraction"] < 0.5
    assert np.isnan(rel[:, 240:]).all() and np.isfinite(rel[:, :150]).all()
    rc, _, _ = run(capsys, "map", img, "-m", trained_model, "--stride", "8", "--what", "class", "-o", tmp_path / "c.npy")
    cls = np.load(tmp_path / "c.npy")
    assert rc == 0 and cls.dtype == np.int16 and (cls[:, 240:] == -1).all() and (cls[:, :150] == 0).mean() > 0.8
    rc, _, _ = run(capsys, "map", img, "-m", trained_model, "--stride", "8", "--what", "class", "-o", tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5") as f:
        assert f.attrs["format"] == "scanlab-map" and json.loads(f["class_index"].attrs["class_names"])[0] == "scanner_0"
        ne = f["no_evidence"][()]
        assert ne.shape == (256, 272) and ne[:, 240:].all() and not ne[:, :150].any()
        assert f["windows/probs"].shape[2] == 3 and f["windows/evidence"].shape == f["windows/probs"].shape[:2]
    rc, _, _ = run(capsys, "map", img, "-m", trained_model, "--stride", "8", "--what", "class", "-o", tmp_path / "c.png")
    png = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"))
    assert png.shape[1] > 272  # legend to the right
    hatch = {tuple(int(c) for c in p) for p in png[:, 240:272].reshape(-1, 3)}
    # grey with the stripes the screen and the report draw (a colour no class colour is near)
    from scanlab.core.colormap import NO_EVIDENCE_GREY, class_colors, stripe_for

    assert hatch == {NO_EVIDENCE_GREY, stripe_for(None)}
    assert stripe_for(None) not in {tuple(int(c) for c in k) for k in class_colors(20)}


def test_map_unknown_needs_an_open_set_model(capsys, tmp_path, random_model, fresh_tree):
    img = sorted(fresh_tree.glob("scanner_0/*.png"))[0]
    rc, _, err = run(capsys, "map", img, "-m", random_model, "--what", "unknown", "-o", tmp_path / "u.npy")
    assert rc == 2 and "no unknown-scanner scorer" in err and not (tmp_path / "u.npy").exists()


def test_evaluate_reports_verdicts_and_unknown_folders(capsys, tmp_path, trained_model, fresh_tree):
    data = tmp_path / "mixed"
    shutil.copytree(fresh_tree / "scanner_0", data / "scanner_0")
    shutil.copytree(fresh_tree / "scanner_1", data / "other_scanner")
    rc, out, _ = run(capsys, "evaluate", data, "-m", trained_model, "--json")
    r = json.loads(out)
    assert rc == 0 and r["n_images"] == 4 and np.array(r["confusion_per_image"]).shape == (3, 3)
    assert sum(r["verdicts"]["scanner_0"].values()) == 4
    u = r["unknown_classes"]["other_scanner"]
    assert u["n_images"] == 4 and u["rejected"] == u["unknown"] + u["inconclusive"]
    assert u["rejection_rate"] == u["rejected"] / 4


def test_shipped_model_warns_when_a_scan_was_turned_by_90_degrees(capsys, tmp_path):
    """Input gating: a known virtual scanner's scan, turned in software, is flagged before its verdict."""
    from scanlab.core.synth.bank import synth_scan
    from scanlab.core.synth.scanner import decode, design

    px = decode(synth_scan(design("default", 3), 5, seed=4242, size=512).data)  # vscan-04, content it never saw
    as_is, turned = tmp_path / "as_is.png", tmp_path / "turned.png"
    Image.fromarray(px).save(as_is)
    Image.fromarray(np.ascontiguousarray(np.rot90(px, 3))).save(turned)  # turned 90 degrees clockwise
    rc, out, _ = run(capsys, "classify", as_is, turned, "--json")
    assert rc == 0
    a, t = json.loads(out)["images"]
    assert a["verdict"] == "attributed" and a["label"] == "vscan-04" and a["warnings"] == []
    assert t["verdict"] != "attributed"
    (w,) = t["warnings"]
    assert w["code"] == "rotated_90" and "turned 90 degrees anticlockwise" in w["message"]
    rc, out, err = run(capsys, "classify", turned)  # the text output warns on stderr, the line stays parseable
    assert rc == 0 and err.strip() == f"scanlab: warning: {turned}: {w['message']}"
    assert out.startswith(f"{turned}\t{t['verdict']}\t")
