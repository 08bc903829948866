# ruff: noqa  -- scratch measurement script (see README.md here)
"""Per-window features, logits and evidence of every image of each set -> images.npz.

Sets: train (the model's training split re-simulated, first --per-class per scanner),
val, known (fresh seed), unk (bank elsewhere), real pages.
"""
import re, sys, time
from pathlib import Path
import numpy as np, torch
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.modelfile.store import load_model
from scanlab.core.evidence.openset import feature_windows, window_features
from scanlab.core.synth.bank import synth_scan, write_atomic
from scanlab.core.synth.scanner import bank

model = sys.argv[1] if len(sys.argv) > 1 else 'trained_models/scanlab-default.safetensors'
out_path = sys.argv[2] if len(sys.argv) > 2 else '/tmp/scanlab-evidence/images.npz'
per_class = 30
torch.set_num_threads(2)
lm = load_model(model); net = lm.net.eval()
W = Path('/tmp/scanlab-evidence')
# training split
tr = W / 'train'
designs = {d.name: d for d in bank('default', len(lm.classes))}
cnt = {}
NAME = re.compile(r"vscan-(\d+)/vscan-\d+_(\d+)\.\w+$")
for rel in lm.manifest['training']['data']['files']['train']:
    cls = rel.split('/')[0]
    if cnt.get(cls, 0) >= per_class: continue
    cnt[cls] = cnt.get(cls, 0) + 1
    t = tr / rel
    if not t.exists():
        t.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(t, synth_scan(designs[cls], int(NAME.search(rel).group(2)), seed=0, size=512).data)
sets = [('train', tr), ('val', W/'val'), ('known', W/'known-s2024'), ('unk', W/'unknown-elsewhere'), ('real', Path('/work/shared/data/real_scans'))]
res = {}
for name, root in sets:
    F, L, E, I, lab, files = [], [], [], [], [], []
    t0 = time.time()
    for k, f in enumerate(sorted(find_images(root))):
        px = load_scan(f).pixels
        ys, xs, ev = feature_windows(px)
        corners = np.stack(np.meshgrid(ys, xs, indexing='ij'), -1).reshape(-1, 2)
        feats = window_features(net, px, corners)
        with torch.inference_mode():
            logits = net.fc(torch.from_numpy(feats)).numpy() if hasattr(net, 'fc') else net.head(torch.from_numpy(feats)).numpy()
        F.append(feats); L.append(logits); E.append(ev.reshape(-1)); I.append(np.full(len(feats), k))
        files.append(str(f)); lab.append(f.parent.name)
    res[name+'_F'] = np.concatenate(F); res[name+'_L'] = np.concatenate(L); res[name+'_E'] = np.concatenate(E)
    res[name+'_I'] = np.concatenate(I); res[name+'_lab'] = np.array(lab); res[name+'_files'] = np.array(files)
    print(name, len(files), res[name+'_F'].shape, f'{time.time()-t0:.0f}s', flush=True)
np.savez(out_path, classes=np.array(lm.classes), **res)
