"""Model files: round trip, no code execution, corrupt/foreign/other-version files, card."""

from __future__ import annotations

import json

import pytest
import torch
from modeltools import write_random_model
from safetensors.torch import save as st_save

from scanlab.core.modelfile import (
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
    pickle_like = tmp_path / "evil.safetensors"
    pickle_like.write_bytes(b"\x80\x04\x95" + b"x" * 100)  # a pickle header is never executed
    with pytest.raises(ModelFileError):
        load_model(pickle_like)
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
    import scanlab.core.modelfile as mf

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
