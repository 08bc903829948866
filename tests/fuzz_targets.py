"""Fuzz targets shared by tests/test_fuzz.py (bounded, in CI) and benchmarks/fuzz_campaign.py (long).

Inputs are valid files with Hypothesis-chosen mutations (byte overwrites, inserts,
deletions, truncation), biased towards the first bytes where headers live. The
only exceptions allowed out of the readers are the documented ones:
:class:`~scanlab.core.io.imaging.ImageLoadError` and
:class:`~scanlab.core.modelfile.store.ModelFileError`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import badfiles as bf
import numpy as np
from hypothesis import strategies as st

FUZZ_MAX_PIXELS = 1_000_000  # small, so a mutated size field cannot make a test allocate much


@functools.cache
def image_seeds() -> dict[str, bytes]:
    v = bf.variants()
    seeds = {k: f() for k, f in bf.GOOD.items()}
    for name in ("palette.png", "rgb48.png", "rgb48.tif", "float.tif", "multipage.tif", "cmyk.tif",
                 "exif_rotated.jpg", "one_bit.png", "la.png"):
        seeds[name] = v[name]
    return seeds


@functools.cache
def model_seed() -> bytes:
    """A small valid model file (2 classes, random weights) as bytes."""
    import tempfile

    from modeltools import write_random_model

    with tempfile.TemporaryDirectory() as d:
        p = write_random_model(Path(d) / "seed.safetensors", ["a", "b"])
        return p.read_bytes()


def _position(n: int) -> st.SearchStrategy[int]:
    head = st.integers(0, max(0, min(n - 1, 600)))
    return st.one_of(head, st.integers(0, max(0, n - 1))) if n > 0 else st.just(0)


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` with 1..8 random edits."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["set", "set", "set", "insert", "delete", "truncate", "int"]))
        pos = draw(_position(len(data)))
        if op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "int" and len(data) >= pos + 4:  # a size field set to an extreme value
            v = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 65535]))
            data[pos : pos + 4] = int(v).to_bytes(4, draw(st.sampled_from(["big", "little"])))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def image_input() -> st.SearchStrategy[bytes]:
    seeds = image_seeds()
    return st.sampled_from(sorted(seeds)).flatmap(lambda k: mutated(seeds[k]))


def model_input() -> st.SearchStrategy[bytes]:
    return st.just(None).flatmap(lambda _: mutated(model_seed()))


def check_image(data: bytes) -> str:
    """Decode; returns "ok" or "refused". Any other exception is a finding."""
    from scanlab.core.io.imaging import ImageLoadError, decode_bytes

    try:
        s = decode_bytes(data, "fuzz.bin", max_pixels=FUZZ_MAX_PIXELS)
    except ImageLoadError as e:
        assert "\n" not in str(e)
        return "refused"
    assert s.pixels.ndim == 3 and s.pixels.shape[2] == 3
    assert s.pixels.dtype in (np.uint8, np.uint16)
    assert s.pixels.shape[:2] == (s.info.height, s.info.width)
    return "ok"


def check_model(data: bytes, folder: Path) -> str:
    """Read the manifest and load the model from ``data``; "ok" or "refused"."""
    from scanlab.core.modelfile.store import ModelFileError, load_model, read_manifest

    p = folder / "fuzz.safetensors"
    p.write_bytes(data)
    try:
        read_manifest(p)
        lm = load_model(p)
    except ModelFileError as e:
        assert "\n" not in str(e)
        return "refused"
    import torch

    assert all(bool(torch.isfinite(t).all()) for t in lm.net.state_dict().values() if t.is_floating_point())
    return "ok"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def manifest_input(draw) -> bytes:
    """A model file whose manifest has one to three keys replaced by arbitrary JSON."""
    from safetensors.torch import save as st_save

    seed = model_seed()
    with safe_open_bytes(seed) as (meta, state):
        man = json.loads(meta["scanlab_manifest"])
    keys = ["format", "format_version", "classes", "architecture", "name", "training", "metrics",
            "weights_sha256", "calibration", "open_set", "demonstration", "training_input", "parent"]
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.sampled_from(keys))
        if k == "architecture" and isinstance(man.get(k), dict) and draw(st.booleans()):
            man[k] = {**man[k], draw(st.sampled_from(["width", "version", "name"])): draw(JSON)}
        else:
            man[k] = draw(JSON)
    return st_save(state, metadata={"scanlab_manifest": json.dumps(man, allow_nan=True)})


class safe_open_bytes:  # noqa: N801 - a context manager used like a function
    """(metadata, tensors) of a safetensors file held in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self):
        from safetensors.torch import load

        n = int.from_bytes(self.data[:8], "little")
        meta = json.loads(self.data[8 : 8 + n]).get("__metadata__", {})
        return meta, load(self.data)

    def __exit__(self, *exc) -> None:
        return None


__all__ = ["check_image", "check_model", "image_input", "manifest_input", "model_input"]
