"""Training job: determinism for a seed, cancellation keeps the previous model, fine-tuning."""

from __future__ import annotations

import pytest
from scanner_tree import make_tree

from scanlab.core.errors import Cancelled
from scanlab.core.jobs import CancelToken
from scanlab.core.modelfile.store import load_model, read_manifest
from scanlab.core.training.loop import TrainConfig
from scanlab.services.training import TrainRequest, run_training


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("st"), n_classes=2, n_images=5, size=128, seed=5)


def _req(tree, out, **kw):
    cfg = TrainConfig(epochs=kw.pop("epochs", 2), sub=(64, 64), seed=kw.pop("seed", 7), batch_size=16)
    return TrainRequest(data_dir=str(tree), output=str(out), config=cfg, base=kw.pop("base", "none"), cache="", **kw)


def test_same_seed_same_weights(tmp_path, small_tree):
    a = run_training(_req(small_tree, tmp_path / "a.safetensors"))
    b = run_training(_req(small_tree, tmp_path / "b.safetensors"))
    c = run_training(_req(small_tree, tmp_path / "c.safetensors", seed=8))
    assert a["weights_sha256"] == b["weights_sha256"]
    assert c["weights_sha256"] != a["weights_sha256"]
    assert [h["train_loss"] for h in a["training"]["history"]] == [h["train_loss"] for h in b["training"]["history"]]


def test_cancel_keeps_previous_model(tmp_path, small_tree, random_model):
    out = tmp_path / "m.safetensors"
    out.write_bytes(random_model.read_bytes())
    tok = CancelToken()
    epochs = []

    def on_epoch(rec):
        epochs.append(rec)
        tok.cancel()

    with pytest.raises(Cancelled):
        run_training(_req(small_tree, out, epochs=5), cancel=tok, on_epoch=on_epoch)
    assert len(epochs) == 1
    assert out.read_bytes() == random_model.read_bytes()


def test_fine_tune_from_base_replaces_head(tmp_path, small_tree, random_model, monkeypatch):
    import torch

    import scanlab.services.training as st

    seen = {}
    real_fit = st.fit

    def spy_fit(net, *a, **k):  # the network as it enters training, before any step
        seen.update({k2: v.detach().clone() for k2, v in net.state_dict().items()})
        return real_fit(net, *a, **k)

    monkeypatch.setattr(st, "fit", spy_fit)
    man = run_training(_req(small_tree, tmp_path / "ft.safetensors", base=str(random_model), epochs=1))
    assert man["parent"].startswith("random-test")
    assert load_model(tmp_path / "ft.safetensors").classes == ["scanner_0", "scanner_1"]
    assert read_manifest(tmp_path / "ft.safetensors")["training"]["data"]["split"] == "6:1:3"
    base = load_model(random_model).net.state_dict()
    trunk = [k for k in base if not k.startswith("fc.")]
    assert trunk and all(torch.equal(seen[k], base[k]) for k in trunk)  # trunk came from the base
    assert seen["fc.weight"].shape[0] == 2 != base["fc.weight"].shape[0]  # new 2-class head


def test_cosine_schedule_anneals_and_files_are_readable(tmp_path, small_tree):
    cfg = TrainConfig(epochs=3, sub=(64, 64), seed=1, batch_size=16, schedule="cosine", lr=0.02)
    out = tmp_path / "cos.safetensors"
    man = run_training(TrainRequest(data_dir=str(small_tree), output=str(out), config=cfg, base="none", cache=""))
    lrs = [h["lr"] for h in man["training"]["history"]]
    assert lrs[0] == pytest.approx(0.02) and lrs[0] > lrs[1] > lrs[2] > 0
    assert man["training"]["recipe"]["schedule"] == "cosine"
    assert out.stat().st_mode & 0o044 == 0o044  # group/other can read a saved model
