"""Every ``scanlab train`` run measures the saved model's verdicts on its test split through the delivery chain
(as scanned, JPEG q90 / q75, resampled x0.8 / x1.25) and stores them as ``delivery_chain_measured``."""

from __future__ import annotations

import hashlib
import json

import pytest
from scanner_tree import make_tree

from scanlab.cli import main
from scanlab.core.jobs import CancelToken
from scanlab.core.modelfile.store import load_model, model_card, read_manifest
from scanlab.core.training.loop import TrainConfig
from scanlab.services.delivery_check import TRANSFORMS, measure
from scanlab.services.training import TrainRequest, run_training

KNOWN_ROWS = ("known_right", "known_wrong", "known_unknown_or_inconclusive")


def _train(data, out, cache, *extra: str) -> int:
    return main([
        "train", str(data), "-o", str(out), "--base", "none", "--epochs", "1", "--max-batches", "2",
        "--sub", "64", "--split", "2:1:1", "--seed", "0", "--cache", str(cache), "--oe-steps", "3", *extra,
    ])


def _digests(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """Three reference scanners x 4 scans, and two negatives (a fourth scanner) in ``_other``."""
    root = make_tree(tmp_path_factory.mktemp("lab"), n_classes=4, n_images=4, size=128, seed=5)
    (root / "scanner_3").rename(root / "_other")
    for p in sorted((root / "_other").iterdir())[2:]:
        p.unlink()
    return root


def test_train_records_the_delivery_chain_on_its_test_split(lab, tmp_path, capsys):
    before = _digests(lab)
    out = tmp_path / "m.safetensors"
    assert _train(lab, out, tmp_path / "c", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["delivery_check"] == "measured"
    m = load_model(out).manifest  # the file loads: weights hash and manifest agree after the second write
    d = m["delivery_chain_measured"]
    test_files = m["training"]["data"]["files"]["test"]
    assert len(test_files) == 3  # one per scanner at 2:1:1
    assert d["benchmark"] == "scanlab train (test split)" and d["verdicts"] == "before the delivery-chain rule"
    assert d["known_scans"] == 3 and d["known_set"] == "this model's test split, 3 scans"
    assert d["commit"] and d["measured"]
    # two negatives: one trained on by outlier exposure, the other held out and scored as an unseen scanner
    assert d["unseen_scans"] == 1 and "held out from outlier exposure" in d["unseen_set"]
    assert list(d["rows"]) == sorted(TRANSFORMS)  # the manifest is stored with sorted keys
    for name, row in d["rows"].items():
        assert (row["kind"], row["parameter"]) == TRANSFORMS[name]
        assert row["known_analysed"] == 3 and row["unseen_analysed"] == 1
        shares = [row[k] for k in KNOWN_ROWS]
        assert all(0.0 <= s <= 1.0 for s in shares) and sum(shares) == pytest.approx(1.0, abs=1e-3)
        assert row["unseen_rejected"] in (0.0, 1.0)
    assert m["training"]["delivery_check"] == "measured"
    assert "not_analysed" not in d
    card = model_card(m)
    assert "the 3 scans of this model's test split" in card and "1 scans of unseen scanners" in card
    assert _digests(lab) == before  # evidence never touched, nothing written beside it


def test_no_delivery_check_leaves_it_absent(lab, tmp_path):
    out = tmp_path / "m.safetensors"
    assert _train(lab, out, tmp_path / "c", "--no-delivery-check") == 0
    m = read_manifest(out)
    assert "delivery_chain_measured" not in m and m["training"]["delivery_check"] == "off"
    assert "Not measured for this model (training was run with --no-delivery-check)" in model_card(m)


def test_scans_too_small_to_resample_are_left_out_with_a_reason(tmp_path, capsys):
    # 72 px scans: analysable as they are, but resampled x0.8 they are 58 px, less than one 64-px window
    root = make_tree(tmp_path / "small", n_classes=2, n_images=4, size=72, seed=3)
    out = tmp_path / "m.safetensors"
    assert _train(root, out, tmp_path / "c") == 0
    assert "Traceback" not in capsys.readouterr().err
    d = read_manifest(out)["delivery_chain_measured"]
    row = d["rows"]["resample-0.8"]
    assert row["known_analysed"] == 0 and all(row[k] is None for k in KNOWN_ROWS)
    assert d["rows"]["as scanned"]["known_analysed"] == d["known_scans"] == 2
    assert d["unseen_scans"] == 0 and d["rows"]["as scanned"]["unseen_rejected"] is None
    assert "no negative scans" in d["unseen_set"]
    na = d["not_analysed"]
    assert na["count"] == 2
    assert all(e["transformation"] == "resample-0.8" and "58" in e["reason"] for e in na["examples"])
    assert all(not e["path"].startswith("/") for e in na["examples"])  # relative to the data folder
    card = model_card(read_manifest(out))
    assert "| resample-0.8 | n/a | n/a | n/a | n/a |" in card and "2 scan(s) could not be analysed" in card


def test_cancel_during_the_check_keeps_the_complete_model(lab, tmp_path):
    tok = CancelToken()
    stages = []

    def on_stage(text):
        stages.append(text)
        if text.startswith("delivery check:"):
            tok.cancel()

    out = tmp_path / "m.safetensors"
    req = TrainRequest(data_dir=str(lab), output=str(out), base="none", cache="",
                       config=TrainConfig(epochs=1, sub=(64, 64), seed=0, batch_size=16, max_batches=2, oe_steps=3))
    man = run_training(req, cancel=tok, on_stage=on_stage)
    assert man["training"]["delivery_check"] == "interrupted" and "delivery_chain_measured" not in man
    assert stages[-1].startswith("delivery check cancelled")
    lm = load_model(out)  # complete and loadable: the trained model is not lost
    assert lm.manifest["weights_sha256"] == man["weights_sha256"]
    assert "the check after training was cancelled" in model_card(lm.manifest)


def test_measure_counts_every_outcome_and_never_reads_an_earlier_measurement(random_model, tmp_path):
    tree = make_tree(tmp_path / "t", n_classes=3, n_images=1, size=96, seed=2)
    lm = load_model(random_model)
    lm.manifest["delivery_chain_measured"] = {"rows": {"jpeg-q75": {"known_wrong": 1.0}}}
    known = [(tree / f"scanner_{c}" / "img_00.png", n) for c, n in enumerate(("a", "b", "c"))]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    progress = []
    m = measure(lm, known + [(bad, "a")], [tree / "scanner_0" / "img_00.png"],
                ["as scanned", "jpeg-q75"], root=tmp_path, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (10, 10)
    for t in ("as scanned", "jpeg-q75"):
        k, u = m.tallies[t]["known"], m.tallies[t]["unseen"]
        assert k.n == 3 and k.not_analysed == 1 and u.n == 1
    assert m.not_analysed == [{"path": "broken.png", "transformation": "all",
                               "reason": m.not_analysed[0]["reason"]}]
    assert "not a readable image" in m.not_analysed[0]["reason"]
    assert lm.manifest["delivery_chain_measured"]  # the caller's model is left as it was
