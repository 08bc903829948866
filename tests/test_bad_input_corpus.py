"""The bad-input corpus (issue 9): every case runs the real CLI in a subprocess.

Every file is generated here (tests/badfiles.py), none is stored in git. Each
error case asserts the exit code, exactly one ``scanlab: error:`` line naming
the file and the problem, no traceback, every input's SHA-256 unchanged and
nothing left in the output folder. HARDENING.md lists the same cases with the
behaviour ScanLab promises.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import badfiles as bf
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "trained_models" / "scanlab-default.safetensors"


@dataclass
class Case:
    """``setup(inp, out) -> (argv, named)``: files go to ``inp``; outputs may only go to ``out``."""

    setup: Callable[[Path, Path], tuple[list[str], str]]
    problem: str  # a substring of the error line
    rc: int = 2
    env: dict[str, str] | None = None
    names: str | None = None  # what the error line must name, when it is not the file (a variable)


def _write(p: Path, data: bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _map(name: str, data: bytes | None) -> Callable[[Path, Path], tuple[list[str], str]]:
    def setup(inp: Path, out: Path):
        f = inp / name
        if data is not None:
            _write(f, data)
        return ["map", str(f), "-o", str(out / "m.npy")], name

    return setup


def _model_case(make: Callable[[Path], Path]) -> Callable[[Path, Path], tuple[list[str], str]]:
    def setup(inp: Path, out: Path):
        img = _write(inp / "scan.png", bf.png())
        m = make(inp)
        return ["map", str(img), "-m", str(m), "-o", str(out / "m.npy")], m.name

    return setup


def _rewritten_model(name: str, edit) -> Callable[[Path], Path]:
    def make(inp: Path) -> Path:
        import torch  # noqa: F401 - safetensors.torch needs it
        from safetensors import safe_open
        from safetensors.torch import save as st_save

        with safe_open(str(SHIPPED), "pt") as f:
            meta = json.loads(f.metadata()["scanlab_manifest"])
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta, state = edit(meta, state)
        return _write(inp / name, st_save(state, metadata={"scanlab_manifest": json.dumps(meta)}))

    return make


def _set(path: list[str], value):
    def edit(m, s):
        d = m
        for k in path[:-1]:
            d = d[k]
        if value is None:
            d.pop(path[-1], None)
        else:
            d[path[-1]] = value
        return m, s

    return edit


def _nan_weights(m, s):
    from scanlab.core.modelfile.store import weights_digest

    w = s["fc.weight"].clone()
    w[0, 0] = float("nan")
    s = {**s, "fc.weight": w}
    return {**m, "weights_sha256": weights_digest(s)}, s


def _wrong_shape(m, s):
    import torch

    from scanlab.core.modelfile.store import weights_digest

    s = {**s, "fc.bias": torch.zeros(3)}
    return {**m, "weights_sha256": weights_digest(s)}, s


def _wrong_other_output(m, s):
    import torch

    from scanlab.core.modelfile.store import weights_digest

    s = {**s, "open_set.other_weight": torch.zeros(7)}  # the network has 96 features
    return {**m, "weights_sha256": weights_digest(s)}, s


def _wrong_gauss(m, s):
    import torch

    from scanlab.core.modelfile.store import weights_digest

    s = {**s, "open_set.gauss_proj": torch.zeros(7, 7), "open_set.gauss_centres": torch.zeros(3, 7)}
    return {**m, "weights_sha256": weights_digest(s)}, s


def _pickle_model(suffix: str):
    def make(inp: Path) -> Path:
        return _write(inp / f"evil{suffix}", bf.pickle_payload(str(inp.parent / "PWNED")))

    return make


def _torch_zip(inp: Path) -> Path:
    import torch

    p = inp / "weights.pt"
    torch.save({"w": torch.zeros(3), "payload": bf.Payload(str(inp.parent / "PWNED"))}, p)
    return p


def _train(make_tree: Callable[[Path], Path], extra: tuple[str, ...] = ()):
    def setup(inp: Path, out: Path):
        root = make_tree(inp)
        return ["train", str(root), "-o", str(out / "model.safetensors"), "--base", "none",
                "--epochs", "1", "--sub", "64", "--cache", "none", *extra], root.name

    return setup


def _tree(classes: dict[str, int], corrupt: str | None = None, dup: bool = False):
    def make(inp: Path) -> Path:
        root = inp / "data"
        root.mkdir()
        for c, n in classes.items():
            (root / c).mkdir()
            for i in range(n):
                _write(root / c / f"{c}_{i}.png", bf.png(72, 72, seed=hash(c) % 1000 + i))
        if corrupt:
            _write(root / corrupt, bf.truncated(bf.png()))
        if dup:
            shutil.copy(root / "a" / "a_0.png", root / "b" / "copy_of_a0.png")
        return root

    return make


def _out_onto(kind: str):
    def setup(inp: Path, out: Path):
        img = _write(inp / "scan.png", bf.png())
        if kind == "same":
            target = img
        elif kind == "symlink":
            target = out / "alias.png"
            target.symlink_to(img)
        elif kind == "hardlink":
            target = out / "hard.png"
            os.link(img, target)
        elif kind == "dotdot":
            target = out / ".." / "in" / "scan.png"
        else:  # the model
            model = inp / "model.h5"
            shutil.copy(SHIPPED, model)
            return ["map", str(img), "-m", str(model), "-o", str(model)], "model.h5"
        return ["map", str(img), "-o", str(target)], target.name

    return setup


def _train_onto(kind: str):
    def setup(inp: Path, out: Path):
        root = _tree({"a": 3, "b": 3})(inp)
        if kind == "image":
            target = out / "model.safetensors"
            os.link(root / "a" / "a_0.png", target)  # a hard link of a training image
            return ["train", str(root), "-o", str(target), "--base", "none", "--epochs", "1"], target.name
        base = inp / "base.safetensors"
        shutil.copy(SHIPPED, base)
        return ["train", str(root), "-o", str(base), "--base", str(base), "--epochs", "1"], base.name

    return setup


def _fifo(where: str):
    def setup(inp: Path, out: Path):
        f = inp / "pipe.png"
        os.mkfifo(f)
        if where == "image":
            return ["map", str(f), "-o", str(out / "m.npy")], "pipe.png"
        img = _write(inp / "scan.png", bf.png())
        return ["map", str(img), "-m", str(f), "-o", str(out / "m.npy")], "pipe.png"

    return setup


def _plain_st(p: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.numpy import save

    return _write(p, save({"w": np.zeros(2, np.float32)}, metadata=metadata))


def _symlink_loop(inp: Path, out: Path):
    a, b = inp / "loop_a.png", inp / "loop_b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    return ["map", str(a), "-o", str(out / "m.npy")], "loop_a.png"


def _folder(inp: Path, out: Path):
    d = inp / "folder.png"
    d.mkdir()
    return ["map", str(d), "-o", str(out / "m.npy")], "folder.png"


def _out_is_folder(inp: Path, out: Path):
    img = _write(inp / "scan.png", bf.png())
    (out / "dir.npy").mkdir()
    return ["map", str(img), "-o", str(out / "dir.npy")], "dir.npy"


def _out_missing_folder(inp: Path, out: Path):
    img = _write(inp / "scan.png", bf.png())
    return ["map", str(img), "-o", str(out / "nope" / "m.npy")], "m.npy"


def _classify_missing(inp: Path, out: Path):
    return ["classify", str(inp / "gone.png")], "gone.png"


def _unicode_corrupt(inp: Path, out: Path):
    f = _write(inp / "späced ünïcode scan.png", bf.truncated(bf.png()))
    return ["map", str(f), "-o", str(out / "m.npy")], f.name


def _big_env(inp: Path, out: Path):
    f = _write(inp / "page.png", bf.png(300, 400))
    return ["map", str(f), "-o", str(out / "m.npy")], "page.png"


CASES: dict[str, Case] = {}
for ext, make in bf.GOOD.items():
    CASES[f"image/zero-byte.{ext}"] = Case(_map(f"zero.{ext}", b""), "empty file")
    CASES[f"image/truncated.{ext}"] = Case(_map(f"trunc.{ext}", bf.truncated(make())), "truncated")
CASES.update({
    "image/corrupt-idat.png": Case(_map("c.png", bf.png_corrupt_idat()), "corrupt"),
    "image/corrupt.jpg": Case(_map("c.jpg", bf.jpeg_corrupt()), "corrupt"),
    "image/corrupt.tif": Case(_map("c.tif", bf.tiff_corrupt()), "corrupt TIFF"),
    "image/corrupt.bmp": Case(_map("c.bmp", bf.bmp_corrupt()), "corrupt"),
    "image/random-bytes.png": Case(_map("random.png", np.random.default_rng(0).bytes(4096)), "not a readable image"),
    "image/text-named.png": Case(_map("text.png", b"this is a text file\n" * 20), "not a readable image"),
    "image/png-bomb": Case(_map("bomb.png", bf.png_bomb()), "SCANLAB_MAX_PIXELS"),
    "image/png-bad-crc": Case(_map("crc.png", bf.png_bad_crc()), "checksum"),
    "image/under-64px": Case(_map("small.png", bf.png(40, 300)), "smaller than 64 px"),
    "image/gif": Case(_map("still.gif", bf.gif()), "unsupported image format GIF"),
    "image/animated-gif": Case(_map("anim.gif", bf.gif(3)), "unsupported image format GIF"),
    "image/webp": Case(_map("still.webp", bf.webp()), "unsupported image format WEBP"),
    "image/animated-webp": Case(_map("anim.webp", bf.webp(3)), "unsupported image format WEBP"),
    "image/float-out-of-range.tif": Case(_map("f.tif", bf.tiff_array(np.full((96, 96), 3.0, np.float32))), "[0, 1]"),
    "image/float-nan.tif": Case(_map("nan.tif", bf.tiff_array(np.full((96, 96), np.nan, np.float32))), "NaN or infinite"),
    "pdf/encrypted.pdf": Case(_map("enc.pdf", bf.pdf_encrypted()), "encrypted PDF"),
    "pdf/truncated.pdf": Case(_map("cut.pdf", bf.pdf_truncated()), "corrupt PDF"),
    "pdf/stream-length-lies.pdf": Case(_map("lies.pdf", bf.pdf_length_lies()), "damaged PDF"),
    "pdf/flate-bomb.pdf": Case(_map("bomb.pdf", bf.pdf_flate_bomb()), "inflates beyond"),
    "pdf/giant-image.pdf": Case(_map("giant.pdf", bf.pdf_giant_image()), "SCANLAB_MAX_PIXELS"),
    "pdf/million-pages.pdf": Case(_map("million.pdf", bf.pdf_million_pages()), "claims 1000000 pages"),
    "pdf/page-tree-loop.pdf": Case(_map("tree.pdf", bf.pdf_page_tree_loop()), "Loop detected"),
    "pdf/form-loop.pdf": Case(_map("form.pdf", bf.pdf_form_loop()), "object loop"),
    "pdf/text-only.pdf": Case(_map("text.pdf", bf.pdf_text_only()), "no scanned image"),
    "image/int32.tif": Case(_map("i32.tif", bf.tiff_array(np.zeros((96, 96), np.int32))), "unsupported sample format"),
    "image/over-pixel-limit": Case(_big_env, "SCANLAB_MAX_PIXELS", env={"SCANLAB_MAX_PIXELS": "100000"}),
    "image/bad-limit-variable": Case(_big_env, "not a whole number", env={"SCANLAB_MAX_PIXELS": "lots"},
                                       names="SCANLAB_MAX_PIXELS"),
    "path/missing-file": Case(_map("missing.png", None), "no such image"),
    "path/directory": Case(_folder, "is a folder"),
    "path/symlink-loop": Case(_symlink_loop, "symbolic links"),
    "path/unicode-and-spaces": Case(_unicode_corrupt, "truncated"),
    "path/device-file": Case(lambda inp, out: (["map", "/dev/zero", "-o", str(out / "m.npy")], "/dev/zero"), "not a regular file"),
    "path/fifo-as-image": Case(_fifo("image"), "not a regular file"),
    "path/fifo-as-model": Case(_fifo("model"), "not a regular file"),
    "path/classify-missing": Case(_classify_missing, "no such image"),
    "path/output-is-a-folder": Case(_out_is_folder, "is a folder"),
    "path/output-folder-missing": Case(_out_missing_folder, "does not exist"),
    "path/output-onto-input": Case(_out_onto("same"), "would overwrite the evidence file"),
    "path/output-symlink-to-input": Case(_out_onto("symlink"), "would overwrite the evidence file"),
    "path/output-hardlink-to-input": Case(_out_onto("hardlink"), "would overwrite the evidence file"),
    "path/output-dotdot-to-input": Case(_out_onto("dotdot"), "would overwrite the evidence file"),
    "path/output-onto-model": Case(_out_onto("model"), "would overwrite the model file"),
    "path/train-output-hardlink-to-image": Case(_train_onto("image"), "would overwrite a training image"),
    "path/train-output-onto-base": Case(_train_onto("base"), "would overwrite the base model"),
    "model/missing": Case(_model_case(lambda inp: inp / "nothere.safetensors"), "no such model file"),
    "model/directory": Case(_model_case(lambda inp: (inp / "dir.safetensors").mkdir() or inp / "dir.safetensors"), "is a folder"),
    "model/zero-byte": Case(_model_case(lambda inp: _write(inp / "z.safetensors", b"")), "corrupt"),
    "model/torch-save-zip": Case(_model_case(_torch_zip), "not a ScanLab model file or corrupt"),
    "model/header-2^60": Case(_model_case(lambda inp: _write(inp / "h.safetensors", (1 << 60).to_bytes(8, "little") + b"{}")), "header length"),
    "model/no-manifest": Case(_model_case(lambda inp: _plain_st(inp / "plain.safetensors")), "without a ScanLab manifest"),
    "model/wrong-tensor-shapes": Case(_model_case(_rewritten_model("shape.safetensors", _wrong_shape)), "do not fit"),
    "model/other-output-wrong-size": Case(_model_case(_rewritten_model("other.safetensors", _wrong_other_output)),
                                          "do not fit the network"),
    "model/gauss-image-wrong-size": Case(_model_case(_rewritten_model("gauss.safetensors", _wrong_gauss)),
                                         "do not fit the network"),
    "model/nan-weights-recomputed-hash": Case(_model_case(_rewritten_model("nan.safetensors", _nan_weights)), "NaN or infinite"),
    "model/edited-weights": Case(_model_case(_rewritten_model("edit.safetensors", lambda m, s: (m, {**s, "fc.bias": s["fc.bias"] + 1}))), "do not match"),
    "model/architecture-is-a-list": Case(_model_case(_rewritten_model("s1.safetensors", _set(["architecture"], [1, 2]))), "manifest invalid"),
    "model/format_version-string": Case(_model_case(_rewritten_model("s2.safetensors", _set(["format_version"], "1"))), "manifest invalid"),
    "model/class-names-dicts": Case(_model_case(_rewritten_model("s3.safetensors", _set(["classes"], [{"a": 1}] * 10))), "class list invalid"),
    "model/width-negative": Case(_model_case(_rewritten_model("s4.safetensors", _set(["architecture", "width"], -4))), "manifest invalid"),
    "model/width-huge": Case(_model_case(_rewritten_model("s5.safetensors", _set(["architecture", "width"], 10**12))), "manifest invalid"),
    "model/one-class": Case(_model_case(_rewritten_model("s6.safetensors", _set(["classes"], ["only"]))), "class list invalid"),
    "model/v2-without-hash": Case(_model_case(_rewritten_model("s7.safetensors", lambda m, s: ({**{k: v for k, v in m.items() if k != "weights_sha256"}, "format_version": 2}, s))), "weights_sha256"),
    "model/newer-format": Case(_model_case(_rewritten_model("s8.safetensors", _set(["format_version"], 99))), "newer than this ScanLab"),
    "model/manifest-not-json": Case(_model_case(lambda inp: _plain_st(inp / "nj.safetensors", {"scanlab_manifest": "{oops"})), "not valid JSON"),
    "train/missing-folder": Case(_train(lambda inp: inp / "none"), "does not exist"),
    "train/empty-folder": Case(_train(lambda inp: (inp / "data").mkdir() or inp / "data"), "no class sub-folders"),
    "train/one-class": Case(_train(_tree({"only": 4})), "only one class folder"),
    "train/empty-class-folder": Case(_train(_tree({"a": 3, "b": 0})), "has no images"),
    "train/one-image-per-class": Case(_train(_tree({"a": 1, "b": 1})), "too few to split"),
    "train/same-file-in-two-classes": Case(_train(_tree({"a": 4, "b": 4}, dup=True)), "same file"),
    "train/corrupt-member-strict": Case(_train(_tree({"a": 4, "b": 4}, corrupt="a/zz_broken.png"), ("--strict-files",)), "truncated"),
})
for suffix in (".pt", ".pth", ".ckpt", ".safetensors"):
    CASES[f"model/pickle-payload{suffix}"] = Case(_model_case(_pickle_model(suffix)), "not a ScanLab model file or corrupt")


def _digests(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run_cli(argv: list[str], tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SCANLAB_")}
    e.update({
        "PYTHONPATH": str(ROOT) + os.pathsep + e.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "QT_QPA_PLATFORM": "offscreen",
        "SCANLAB_DATA_DIR": str(tmp / "userdata"),
        "SCANLAB_CACHE_DIR": str(tmp / "usercache"),
        **(env or {}),
    })
    return subprocess.run([sys.executable, "-m", "scanlab", *argv], capture_output=True, text=True,
                          env=e, timeout=300, cwd=tmp, stdin=subprocess.DEVNULL)


def test_corpus_is_large_enough():
    assert len(CASES) + len(bf.variants()) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(tmp_path, name):
    case = CASES[name]
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    argv, named = case.setup(inp, out)
    named = case.names or named
    before, out_before = _digests(inp), _listing(out)
    out_digests = _digests(out)
    r = run_cli(argv, tmp_path, case.env)
    assert r.returncode == case.rc, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("scanlab: error:")]
    assert len(errors) == 1, r.stderr
    assert named in errors[0] and case.problem in errors[0], errors[0]
    assert "Traceback" not in r.stderr
    assert _digests(inp) == before  # the evidence, models and training images are untouched
    assert _listing(out) == out_before and _digests(out) == out_digests  # nothing partial left
    assert not (tmp_path / "PWNED").exists()  # no pickle payload ran


def test_readable_variants_load_at_their_true_depth(tmp_path):
    """The formats the loader promises to read, in one classify run (JSON per image)."""
    inp = tmp_path / "in"
    files = {name: _write(inp / name, data) for name, data in bf.variants().items()}
    before = _digests(inp)
    r = run_cli(["classify", *map(str, files.values()), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "scanlab: error" not in r.stderr and "Traceback" not in r.stderr
    assert "Warning" not in r.stderr  # e.g. Pillow's damaged-EXIF warnings stay off stderr
    got = {Path(e["path"]).name: e["scan"] for e in json.loads(r.stdout)["images"]}
    # a multi-page TIFF is one piece of evidence per page (scanlab.core.io.containers)
    assert set(got) == (set(files) - {"multipage.tif"}) | {"multipage.tif#page=1", "multipage.tif#page=2"}
    expect_depth = {"one_bit.png": 1, "grey16.png": 16, "rgb48.png": 16, "rgb48.tif": 16, "float.tif": 32}
    for name, scan in got.items():
        assert scan["bit_depth"] == expect_depth.get(name, 8), name
        assert (scan["width"], scan["height"]) == (96, 96)
    assert got["exif_rotated.jpg"]["exif_orientation"] == 6
    assert got["corrupt_exif.jpg"]["exif_orientation"] in (6, None)  # damaged tags skipped, no crash
    assert got["png_named.jpg"]["format"] == "PNG" and got["cmyk.tif"]["mode"] == "CMYK"
    assert _digests(inp) == before


def test_corrupt_member_is_skipped_and_listed(tmp_path):
    """Issue 9 item 8: one unreadable training image is skipped, listed, and the run completes."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    argv, _ = _train(_tree({"a": 5, "b": 5}, corrupt="a/zz_broken.png"), ("--json",))(inp, out)
    before = _digests(inp)
    r = run_cli(argv, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("scanlab: warning:")]
    assert len(warn) == 1 and "zz_broken.png" in warn[0] and "truncated" in warn[0]
    summary = json.loads(r.stdout)
    assert [s["path"] for s in summary["skipped_files"]] == ["a/zz_broken.png"]
    from scanlab.core.modelfile.store import read_manifest

    man = read_manifest(out / "model.safetensors")
    assert man["training"]["skipped_files"] == summary["skipped_files"]
    assert "truncated" in man["training"]["skipped_files"][0]["reason"]
    assert "a/zz_broken.png" not in sum(man["training"]["data"]["files"].values(), [])
    assert _digests(inp) == before
