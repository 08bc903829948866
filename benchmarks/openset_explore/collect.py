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
lm = load_model('trained_models/scanlab-default.safetensors')
eng = get_engine('dense')
out = {}
for name, root in [('val','/tmp/scanlab-evidence/val'),('known','/tmp/scanlab-evidence/known-s2024'),('unk','/tmp/scanlab-evidence/unknown-elsewhere'),('real','/work/shared/data/real_scans')]:
    P, E, C, Y, I = [], [], [], [], []
    files = sorted(find_images(root))
    for k, f in enumerate(files):
        s = load_scan(f)
        ys, xs = vote_grid(s.shape, (64, 64))
        p = eng.window_probs(lm.net, s.pixels, ys, xs, device=torch.device('cpu'))
        e, c = window_statistics(s.pixels, ys, xs)
        cls = Path(f).parent.name
        y = lm.classes.index(cls) if cls in lm.classes else -1
        P.append(p.reshape(-1, p.shape[-1])); E.append(e.ravel()); C.append(c.ravel())
        Y.append(np.full(e.size, y)); I.append(np.full(e.size, k))
    out[name] = dict(P=np.concatenate(P), E=np.concatenate(E), C=np.concatenate(C), Y=np.concatenate(Y), I=np.concatenate(I))
    print(name, len(files), out[name]['P'].shape, flush=True)
np.savez('/tmp/scanlab-evidence/windows.npz', **{f'{k}_{kk}': v for k, d in out.items() for kk, v in d.items()})
