"""Record what the shipped model's training scans were (``training_input``) in its manifest.

The shipped file was trained before ``scanlab train`` recorded the formats and JPEG
qualities of its training scans, so its manifest had ``training_input`` without
``formats`` and the JPEG gating warnings (a questioned JPEG below the training
qualities, or re-compressed after the scanner) never fired for it. The facts can be
recovered exactly: the training scans are the default virtual bank's, whose format,
JPEG quality and chroma subsampling depend only on the scanner design, not on the
content. This script draws one scan per scanner of that bank, checks that its file
type is the one of that scanner's training files listed in the manifest, and computes
``input_summary`` (headers only, as ``scanlab train`` does) over the manifest's list of
training files, each standing in by its scanner's scan. Weights and every other key stay
as they are; the model card's generated part is rewritten, its hand-written part kept.

    python benchmarks/store_training_input.py trained_models/scanlab-default.safetensors
    python packaging/make_selftest_set.py        # the file's SHA-256 changed
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from scanlab.core.io.imaging import find_images
from scanlab.core.io.jpegfacts import input_summary
from scanlab.core.modelfile.store import load_model, model_card, save_model
from scanlab.core.synth.bank import write_bank

CARD_TAIL = "- **Demonstration model**"  # the first line of the card's part model_card() does not write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--card", default=None, help="model card to update (default: MODEL with .md)")
    a = ap.parse_args()
    lm = load_model(a.model)
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    train = man["training"]["data"]["files"]["train"]
    classes = lm.classes
    with tempfile.TemporaryDirectory() as tmp:
        write_bank(Path(tmp), len(classes), 1, size=256, seed=0, bank_name="default", force=True)
        sample = {p.parent.name: p for p in find_images(Path(tmp))}
        missing = sorted(set(classes) - set(sample))
        if missing:
            sys.exit(f"the default bank did not give {missing}: not this model's bank")
        for f in train:
            cls, ext = f.split("/")[0], f.rsplit(".", 1)[-1].lower()
            got = sample[cls].suffix.lstrip(".").lower()
            if {ext, got} - {"jpg", "jpeg"} and ext != got:
                sys.exit(f"{f}: the bank now writes .{got} for {cls}: the designs changed, facts not recoverable")
        summary = input_summary(str(sample[f.split("/")[0]]) for f in train)
    ti = dict(man.get("training_input") or {})
    ti.update(summary)
    ti["recovered_by"] = "benchmarks/store_training_input.py (one scan per scanner of the default bank; headers only)"
    man["training_input"] = ti
    save_model(lm.net, man, a.model, dict(lm.extras))
    card = Path(a.card) if a.card else Path(a.model).with_suffix(".md")
    if card.is_file():
        old = card.read_text(encoding="utf-8")
        i = old.find(CARD_TAIL)
        if i < 0:
            sys.exit(f"{card}: no '{CARD_TAIL}' line; card not rewritten")
        head = model_card(load_model(a.model).manifest)
        j = head.find(CARD_TAIL)
        card.write_text((head[:j] if j >= 0 else head + "\n") + old[i:], encoding="utf-8")
    print(f"training_input of {a.model}: {summary}")


if __name__ == "__main__":
    main()
