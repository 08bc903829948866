# ruff: noqa  -- scratch measurement script, kept verbatim as run (see README.md here)
from pathlib import Path

import numpy as np
import torch

from scanlab.core.engine.engines import get_engine
from scanlab.core.engine.nosignal import window_statistics
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.modelfile.store import load_model
from scanlab.core.engine.patches import vote_grid

torch.set_num_threads(1)
lm = load_model('trained_models/scanlab-default.safetensors'); eng = get_engine('dense')
files = sorted(find_images('/tmp/scanlab-evidence/val'))[::3]
ok, cf, ee = [], [], []
for f in files:
    s = load_scan(f); y = lm.classes.index(Path(f).parent.name)
    for g in [1.3, 1.8, 2.6]:
        px = np.clip(s.pixels.astype(np.float32) * g, 0, 255).astype(np.uint8)
        ys, xs = vote_grid(s.shape, (64, 64))
        p = eng.window_probs(lm.net, px, ys, xs, device=torch.device('cpu'))
        e, c = window_statistics(px, ys, xs)
        ok.append((p.argmax(-1) == y).ravel()); cf.append(c.ravel()); ee.append(e.ravel())
ok, cf, ee = map(np.concatenate, (ok, cf, ee))
for lo, hi in [(0,0.01),(0.01,0.25),(0.25,0.5),(0.5,0.75),(0.75,0.9),(0.9,1.01)]:
    m = (cf>=lo)&(cf<hi)
    print(f'clipped [{lo},{hi}) n={m.sum()} acc={ok[m].mean() if m.any() else float("nan"):.3f}')
