"""Model files: round trip, no code execution, corrupt/foreign/other-version files, card."""

from __future__ import annotations

import json

import pytest
import torch
from modeltools import write_random_model
from safetensors.torch import save as st_save

from scanlab.core.modelfile.store import (
    META_KEY,
    ModelFileError,
    load_model,
    model_card,
    read_manifest,
    save_model,
)


def test_round_trip_same_outputs(tmp_path, random_model):
    lm = load_model(random_model)
    assert lm.classes == ["a", "b", "c"]
    x = torch.rand(2, 3, 64, 64)
    again = load_model(random_model)
    with torch.no_grad():
        assert torch.equal(lm.net(x), again.net(x))
    m = lm.manifest
    for key in ("classes", "architecture", "versions", "created", "weights_sha256", "training", "metrics"):
        assert key in m
    assert m["architecture"]["patch"] == 64


def _rewrite(src, dst, edit):
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta, state = edit(meta, state)
    dst.write_bytes(st_save(state, metadata={META_KEY: json.dumps(meta)}))
    return dst


@pytest.mark.parametrize(
    "edit,msg",
    [
        (lambda m, s: ({**m, "architecture": {**m["architecture"], "version": 99}}, s), "not supported"),
        (lambda m, s: ({**m, "format": "other"}, s), "not a ScanLab model"),
        (lambda m, s: (m, {**s, "fc.bias": s["fc.bias"] + 1}), "do not match the manifest"),
        (lambda m, s: ({**m, "classes": ["a"]}, s), "class list"),
    ],
)
def test_incompatible_files_refused(tmp_path, random_model, edit, msg):
    bad = _rewrite(random_model, tmp_path / "bad.safetensors", edit)
    with pytest.raises(ModelFileError, match=msg):
        load_model(bad)


def test_corrupt_and_foreign_files(tmp_path, random_model):
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(random_model.read_bytes()[:500])
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(trunc)
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(st_save({"w": torch.zeros(2)}))
    with pytest.raises(ModelFileError, match="without a ScanLab manifest"):
        load_model(plain)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_failed_save_keeps_previous_file(tmp_path, random_model, monkeypatch):
    target = write_random_model(tmp_path / "m.safetensors", ["x", "y"])
    before = target.read_bytes()
    lm = load_model(random_model)
    import scanlab.core.modelfile.store as mf

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mf.os, "fsync", boom)
    with pytest.raises(OSError):
        save_model(lm.net, lm.manifest, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp left behind


def test_card_is_derived_from_manifest(random_model):
    card = model_card(read_manifest(random_model))
    assert "# Model card: random-test" in card and "a, b, c" in card and "parameters" in card


class _Payload:
    """Unpickling this runs ``open(sentinel, "w")``: a real code-execution payload."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".ckpt"])
@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_payload_never_executes(tmp_path, suffix, kind):
    import pickle

    sentinel = tmp_path / "pwned"
    evil = tmp_path / f"evil{suffix}"
    if kind == "pickle":
        evil.write_bytes(pickle.dumps(_Payload(str(sentinel))))
    else:
        torch.save({"w": torch.zeros(2), "x": _Payload(str(sentinel))}, evil)
    assert not sentinel.exists()
    # the payload is live: plain unpickling would create the sentinel (so this test can fail)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(str(probe))))
    assert probe.exists()
    with pytest.raises(ModelFileError, match="not a ScanLab model file or corrupt"):
        load_model(evil)
    with pytest.raises(ModelFileError):
        read_manifest(evil)
    assert not sentinel.exists()


def _manifest_edit(key_path, value):
    def edit(m, s):
        m = json.loads(json.dumps(m))
        d = m
        for k in key_path[:-1]:
            d = d[k]
        if value is _DELETE:
            del d[key_path[-1]]
        else:
            d[key_path[-1]] = value
        return m, s

    return edit


_DELETE = object()

SCHEMA_VIOLATIONS = {
    "architecture is a list": (["architecture"], [1, 2]),
    "format_version is a string": (["format_version"], "1"),
    "format_version is a bool": (["format_version"], True),
    "class names are dicts": (["classes"], [{"a": 1}, {"b": 2}]),
    "class name empty": (["classes"], ["", "b", "c"]),
    "duplicate classes": (["classes"], ["a", "a", "c"]),
    "too many classes": (["classes"], [f"c{i}" for i in range(1001)]),
    "classes missing": (["classes"], _DELETE),
    "width negative": (["architecture", "width"], -3),
    "width huge": (["architecture", "width"], 10**9),
    "width a float": (["architecture", "width"], 1.5),
    "width a string": (["architecture", "width"], "1"),
    "version a string": (["architecture", "version"], "1"),
    "training a list": (["training"], []),
    "metrics a string": (["metrics"], "good"),
    "weights hash not hex": (["weights_sha256"], "zz"),
    "calibration a list": (["calibration"], [1]),
    "demonstration a string": (["demonstration"], "yes"),
    "skipped_files not a list": (["training", "skipped_files"], "x"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_VIOLATIONS))
def test_schema_violations_are_one_line_model_errors(tmp_path, random_model, case):
    key_path, value = SCHEMA_VIOLATIONS[case]
    bad = _rewrite(random_model, tmp_path / "bad.safetensors", _manifest_edit(key_path, value))
    for fn in (read_manifest, load_model):
        with pytest.raises(ModelFileError) as ei:
            fn(bad)
        msg = str(ei.value)
        assert "\n" not in msg and str(bad) in msg


def test_manifest_not_an_object_and_newer_version(tmp_path, random_model):
    bad = tmp_path / "list.safetensors"
    bad.write_bytes(st_save({"w": torch.zeros(2)}, metadata={META_KEY: "[1, 2]"}))
    with pytest.raises(ModelFileError, match="not a JSON object"):
        read_manifest(bad)
    newer = _rewrite(random_model, tmp_path / "v9.safetensors", _manifest_edit(["format_version"], 9))
    with pytest.raises(ModelFileError, match="newer than this ScanLab"):
        load_model(newer)


def test_v2_blocks_and_unknown_keys_are_accepted(tmp_path, random_model):
    def edit(m, s):
        return {**m, "calibration": {"calibrated": False, "reason": "too few"}, "open_set": {"method": "x"},
                "demonstration": True, "training_input": {"dpi": None}, "future_key": {"anything": [1]}}, s

    ok = _rewrite(random_model, tmp_path / "ok.safetensors", edit)
    assert load_model(ok).manifest["future_key"] == {"anything": [1]}


def _recompute_hash(m, s):
    from scanlab.core.modelfile.store import weights_digest

    return {**m, "weights_sha256": weights_digest(s)}, s


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_refused_even_with_matching_hash(tmp_path, random_model, bad_value):
    def edit(m, s):
        w = s["fc.weight"].clone()
        w[0, 0] = bad_value
        return _recompute_hash(m, {**s, "fc.weight": w})

    bad = _rewrite(random_model, tmp_path / "nan.safetensors", edit)
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        load_model(bad)


def test_v2_requires_hash_v1_does_not(tmp_path, random_model):
    no_hash = _manifest_edit(["weights_sha256"], _DELETE)
    v2 = _rewrite(random_model, tmp_path / "v2.safetensors", no_hash)
    with pytest.raises(ModelFileError, match="weights_sha256"):
        load_model(v2)

    def v1(m, s):
        m, s = no_hash(m, s)
        return {**m, "format_version": 1}, s

    old = _rewrite(random_model, tmp_path / "v1.safetensors", v1)
    assert load_model(old).classes == ["a", "b", "c"]


def test_shipped_model_carries_calibration_and_open_set():
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "trained_models" / "scanlab-default.safetensors"
    lm = load_model(shipped)
    m = lm.manifest
    assert m["format_version"] == 2 and len(lm.classes) == 10 and m["demonstration"] is True
    assert m["calibration"]["calibrated"] is True and m["open_set"]["method"] == "other-output"
    assert set(lm.extras) == {"open_set.other_weight", "open_set.other_bias"}
    assert lm.extras["open_set.other_weight"].shape == (lm.net.feature_channels,)
    assert m["training"]["outlier_exposure"]["args"]["oe_bank"] != "elsewhere"  # the benchmark's unknown bank


def test_wrong_tensor_shapes_refused(tmp_path, random_model):
    bad = _rewrite(random_model, tmp_path / "shape.safetensors",
                   lambda m, s: _recompute_hash(m, {**s, "fc.bias": torch.zeros(7)}))
    with pytest.raises(ModelFileError, match="do not fit the manifest's architecture"):
        load_model(bad)


def test_huge_header_length_refused_without_allocating(tmp_path):
    import struct

    bad = tmp_path / "huge.safetensors"
    bad.write_bytes(struct.pack("<Q", 1 << 60) + b"{}" + b"\0" * 64)
    for fn in (read_manifest, load_model):
        with pytest.raises(ModelFileError, match="header length"):
            fn(bad)


def test_extras_round_trip_and_are_hashed(tmp_path, random_model):
    from scanlab.core.modelfile.store import weights_digest

    lm = load_model(random_model)
    extras = {"open_set.means": torch.randn(3, 8), "open_set.cov": torch.eye(8)}
    out = tmp_path / "ext.safetensors"
    man = save_model(lm.net, lm.manifest, out, extras=extras)
    again = load_model(out)
    assert set(again.extras) == set(extras)
    assert all(torch.equal(again.extras[k], v) for k, v in extras.items())
    full = {**again.net.state_dict(), **again.extras}
    assert man["weights_sha256"] == weights_digest(full) != lm.manifest["weights_sha256"]
    assert man["format_version"] == 2
    # an edited extra is caught by the hash
    tampered = _rewrite(out, tmp_path / "t.safetensors",
                        lambda m, s: (m, {**s, "open_set.cov": s["open_set.cov"] * 2}))
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(tampered)
    with pytest.raises(ValueError, match="open_set"):
        save_model(lm.net, lm.manifest, tmp_path / "x.safetensors", extras={"fc.weight": torch.zeros(1)})


def test_file_hash_is_of_the_bytes_loaded(random_model):
    import hashlib

    lm = load_model(random_model)
    assert lm.manifest["_file_sha256"] == hashlib.sha256(random_model.read_bytes()).hexdigest()


def test_bad_file_in_models_folder_is_listed_unusable(tmp_path, monkeypatch, random_model):
    import shutil

    from scanlab.services import models

    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(random_model, user / "good.safetensors")
    _rewrite(random_model, user / "types.safetensors", _manifest_edit(["architecture"], [1]))
    (user / "junk.safetensors").write_bytes(b"not a model")
    monkeypatch.setattr(models, "user_models_dir", lambda: user)
    monkeypatch.setattr(models, "shipped_models_dir", lambda: tmp_path / "none")
    got = {m["path"].rsplit("/", 1)[-1]: m for m in models.list_models()}
    assert got["good.safetensors"]["usable"] and got["good.safetensors"]["classes"] == ["a", "b", "c"]
    for bad in ("types.safetensors", "junk.safetensors"):
        assert not got[bad]["usable"] and got[bad]["reason"] and "\n" not in got[bad]["reason"]
