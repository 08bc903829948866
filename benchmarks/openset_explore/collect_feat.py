# ruff: noqa  -- scratch measurement script, kept verbatim as run (see README.md here)
import numpy as np
import torch

from scanlab.core.io.imaging import find_images, load_scan, to_float
from scanlab.core.modelfile.store import load_model
from scanlab.core.engine.patches import vote_grid

torch.set_num_threads(1)
lm = load_model('trained_models/scanlab-default.safetensors'); net = lm.net.eval()
out = {}
for name, root in [('val','/tmp/scanlab-evidence/val'),('known','/tmp/scanlab-evidence/known-s2024'),('unk','/tmp/scanlab-evidence/unknown-elsewhere'),('real','/work/shared/data/real_scans')]:
    Fs = []
    for f in sorted(find_images(root)):
        s = load_scan(f); x = torch.from_numpy(to_float(s.pixels))
        ys, xs = vote_grid(s.shape, (64, 64))
        b = torch.stack([x[:, y:y+64, xx:xx+64] for y in ys for xx in xs])
        with torch.inference_mode():
            Fs.append(net.trunk(b).mean(dim=(2, 3)).numpy())
    out[name] = np.concatenate(Fs); print(name, out[name].shape, flush=True)
np.savez('/tmp/scanlab-evidence/feats.npz', **out)
