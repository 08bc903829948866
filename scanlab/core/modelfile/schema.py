"""The model manifest's JSON Schema and the bounded reading of a safetensors header.

A model file may come from anyone (a colleague, a download, an attacker), so
everything read from it is checked against fixed bounds *before* anything is
allocated or trusted:

* the file size (``MAX_MODEL_BYTES``) and the header length (``MAX_HEADER_BYTES``);
* every tensor entry (dtype from a short list, shape of non-negative ints, byte
  range inside the file, consistent with dtype x shape);
* the manifest, against :data:`MANIFEST_SCHEMA` (JSON Schema, validated with the
  ``jsonschema`` library). Keys that matter for loading have strict types; the
  optional v2 blocks (``calibration``, ``open_set``, ...) are checked loosely and
  unknown keys are allowed, so files written by a newer minor release still load.

jsonschema (not pydantic) because the schema is plain data, language-neutral and
can be published next to docs/formats.md for other tools to validate model files;
its errors carry the JSON path of the offending value, which becomes the one-line
message.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import jsonschema

MAX_MODEL_BYTES = 1 << 30  # 1 GiB: width 16 with 1000 classes and open-set statistics fits
MAX_HEADER_BYTES = 16 << 20  # a header lists names, dtypes and shapes only
MAX_TENSORS = 4096
MAX_NDIM = 8
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_WIDTH = 16
MAX_CLASSES = 1000

_OBJ = {"type": "object"}
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "format_version", "classes", "architecture"],
    "properties": {
        "format": {"type": "string"},
        "format_version": {"type": "integer", "minimum": 1},
        "name": {"type": ["string", "null"], "maxLength": 500},
        "classes": {
            "type": "array",
            "minItems": 2,
            "maxItems": MAX_CLASSES,
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": 500},
        },
        "architecture": {
            "type": "object",
            "required": ["name", "version", "width"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "integer"},
                "width": {"type": "integer", "minimum": 1, "maximum": MAX_WIDTH},
                "patch": {"type": "integer", "minimum": 1, "maximum": 4096},
                "stride": {"type": "integer", "minimum": 1, "maximum": 4096},
                "parameters": {"type": "integer", "minimum": 0},
            },
        },
        "input": _OBJ,
        "training": {
            "type": "object",
            "properties": {
                "skipped_files": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"path": {"type": "string"}, "reason": {"type": "string"}}},
                },
            },
        },
        "metrics": _OBJ,
        "parent": {"type": ["string", "null"]},
        "versions": _OBJ,
        "created": {"type": ["string", "null"]},
        "weights_sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
        # v2 blocks (docs/formats.md section 2): loose on purpose, their owners validate content
        "calibration": _OBJ,
        "open_set": _OBJ,
        "demonstration": {"type": "boolean"},
        "training_input": _OBJ,
    },
    "additionalProperties": True,
}
_VALIDATOR = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)


class HeaderError(ValueError):
    """The safetensors header is malformed or out of bounds (message is one short phrase)."""


def schema_problem(manifest: Any) -> str | None:
    """The first schema violation as ``"at <json path>: <problem>"``, or None when valid."""
    errors = sorted(_VALIDATOR.iter_errors(manifest), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(x) for x in e.absolute_path) or "(top level)"
    msg = e.message.splitlines()[0] if e.message else "invalid"
    if len(msg) > 120:
        msg = msg[:117] + "..."
    return f"at {where}: {msg}"


def parse_header(data: bytes | memoryview, file_size: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse and bound-check a safetensors header.

    Parameters
    ----------
    data : bytes
        At least the first ``8 + header length`` bytes of the file (the whole file
        when ``file_size`` is None).
    file_size : int, optional
        The file's total size; defaults to ``len(data)``.

    Returns
    -------
    (metadata, tensors)
        ``metadata``: the ``__metadata__`` string map; ``tensors``: name ->
        ``{"dtype", "shape", "data_offsets"}``, all checked.

    Raises
    ------
    HeaderError
        Any malformed or out-of-bounds field.
    """
    size = len(data) if file_size is None else file_size
    if size < 8 or len(data) < 8:
        raise HeaderError("file too short for a safetensors header")
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
        raise HeaderError(f"header length {n} is impossible for a {size}-byte file")
    if len(data) < 8 + n:
        raise HeaderError("header truncated")
    try:
        head = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise HeaderError("header is not valid JSON") from None
    if not isinstance(head, dict):
        raise HeaderError("header is not a JSON object")
    meta = head.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise HeaderError("header metadata is not a string map")
    if len(head) > MAX_TENSORS:
        raise HeaderError(f"{len(head)} tensors (at most {MAX_TENSORS})")
    body = size - 8 - n
    for name, t in head.items():
        if not isinstance(t, dict):
            raise HeaderError(f"tensor {name[:60]!r}: entry is not an object")
        dt, shape, off = t.get("dtype"), t.get("shape"), t.get("data_offsets")
        if dt not in DTYPE_SIZES:
            raise HeaderError(f"tensor {name[:60]!r}: unsupported dtype {str(dt)[:20]!r}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in shape)
        ):
            raise HeaderError(f"tensor {name[:60]!r}: invalid shape")
        if (
            not isinstance(off, list)
            or len(off) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in off)
            or not 0 <= off[0] <= off[1] <= body
        ):
            raise HeaderError(f"tensor {name[:60]!r}: data range outside the file")
        if math.prod(shape) * DTYPE_SIZES[dt] != off[1] - off[0]:
            raise HeaderError(f"tensor {name[:60]!r}: shape {shape} does not match its {off[1] - off[0]} bytes")
    return meta, head
