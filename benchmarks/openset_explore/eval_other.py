# ruff: noqa  -- scratch measurement script (see README.md here)
"""Image-level check of a train_other.py checkpoint: P(other) on val / fresh known / unknown bank / real pages."""
import sys, time
from pathlib import Path
import numpy as np, torch
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.modelfile.store import load_model
from scanlab.core.evidence.openset import feature_windows, window_features

ck = torch.load(sys.argv[1], weights_only=False)
AGG = 'mean'
torch.set_num_threads(2)
lm = load_model('trained_models/scanlab-default.safetensors'); net = lm.net
net.load_state_dict(ck['state']); net.eval()
w, b = ck['other_weight'].numpy(), ck['other_bias'].numpy()
W = Path('/tmp/scanlab-evidence')
res = {}
for name, root in [('val', W/'val'), ('known', W/'known-s2024'), ('unk', W/'unknown-elsewhere'), ('real', Path('/work/shared/data/real_scans'))]:
    rows = []
    for f in sorted(find_images(root)):
        px = load_scan(f).pixels
        ys, xs, ev = feature_windows(px)
        corners = np.stack(np.meshgrid(ys, xs, indexing='ij'), -1).reshape(-1, 2)
        ev = ev.reshape(-1)
        if not ev.any():
            rows.append((f.name, f.parent.name, np.nan, -1, 0.0)); continue
        fe = window_features(net, px, corners[ev])
        with torch.inference_mode():
            z = net.fc(torch.from_numpy(fe)).numpy()
        zo = fe @ w + b[0]
        zall = np.concatenate([z, zo[:, None]], 1)
        zall -= zall.max(1, keepdims=True)
        p = np.exp(zall); p /= p.sum(1, keepdims=True)
        votes = np.bincount(z.argmax(1), minlength=len(lm.classes))
        top = int(votes.argmax())
        po = np.clip(p[:, -1], 1e-6, 1 - 1e-6)
        pt = np.clip(p[:, top], 1e-6, 1)
        aggs = {'mean': po.mean(), 'median': np.median(po), 'logodds': np.mean(np.log(po / (1 - po))),
                'frac>0.5': np.mean(po > 0.5), 'ratio_top': np.mean(np.log(po / pt))}
        rows.append((f.name, f.parent.name, float(aggs[AGG]), top, votes[top] / len(z), aggs))
    res[name] = rows
val = np.array([r[2] for r in res['val']])
for q in (0.95, 0.98, 1.0):
    thr = np.quantile(val, q)
    def acc(rows):
        return np.mean([(r[2] <= thr) and lm.classes[r[3]] == r[1] and r[4] >= 0.5 for r in rows])
    def rej(rows):
        return np.mean([not (r[2] <= thr and r[4] >= 0.5) for r in rows])
    print(f"thr val-q{q}: {thr:.3f}  val acc {acc(res['val']):.2f}  known attributed+right {acc(res['known']):.2f}  unk rejected {rej(res['unk']):.2f}  real rejected {rej(res['real'])*8:.0f}/8")
print('val vote acc', np.mean([lm.classes[r[3]] == r[1] for r in res['val']]), 'known vote acc', np.mean([lm.classes[r[3]] == r[1] for r in res['known']]))
k = np.array([r[2] for r in res['known']]); u = np.array([r[2] for r in res['unk']])
print('AUROC', (u[:, None] > k[None]).mean())
print('real', [(r[0], round(r[2], 3)) for r in res['real']])
print('unk per scanner', {c: round(float(np.mean([r[2] for r in res['unk'] if r[1] == c])), 3) for c in sorted({r[1] for r in res['unk']})})

for agg in ['mean', 'median', 'logodds', 'frac>0.5', 'ratio_top']:
    v = np.array([r[5][agg] if len(r) > 5 else np.nan for r in res['val']])
    k = np.array([r[5][agg] if len(r) > 5 else np.nan for r in res['known']])
    u = np.array([r[5][agg] if len(r) > 5 else np.nan for r in res['unk']])
    thr = np.nanmax(v)
    print(f"{agg:10s} AUROC {(u[:, None] > k[None]).mean():.4f}  @valmax known-pass {np.mean(k <= thr):.2f} unk-rej {np.mean(u > thr):.2f}"
          f"  @val-q98 known-pass {np.mean(k <= np.nanquantile(v, .98)):.2f} unk-rej {np.mean(u > np.nanquantile(v, .98)):.2f}")
