# ruff: noqa  -- scratch measurement script (see README.md here)
"""Image-level open-set scores from images.npz: which separates known from unknown images?"""
import sys
import numpy as np
d = dict(np.load(sys.argv[1] if len(sys.argv) > 1 else '/tmp/scanlab-evidence/images.npz'))
classes = list(d['classes'])

def per_image(name, what):
    X, I, E = d[f'{name}_{what}'], d[f'{name}_I'], d[f'{name}_E']
    out = []
    for i in np.unique(I):
        m = (I == i) & E
        out.append(X[m] if m.any() else X[I == i][:0])
    return out

def lab(name):
    return np.array([classes.index(c) if c in classes else -1 for c in d[f'{name}_lab']])

def auroc(neg, pos):
    neg, pos = np.asarray(neg), np.asarray(pos)
    return (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()

def unit(x): return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
def lsm(z): z = z - z.max(-1, keepdims=True); return z - np.log(np.exp(z).sum(-1, keepdims=True))

def report(tag, s_val, s_known, s_unk, s_real):
    thr = np.quantile(s_val, 0.98)
    thr_max = s_val.max()
    print(f"{tag:40s} AUROC {auroc(s_known, s_unk):.3f}  @val98: known-acc {np.mean(s_known<=thr):.2f} unk-rej {np.mean(s_unk>thr):.2f} real {np.sum(s_real>thr)}/8 | @valmax: known {np.mean(s_known<=thr_max):.2f} unk {np.mean(s_unk>thr_max):.2f} real {np.sum(s_real>thr_max)}/8")

sets = ['train', 'val', 'known', 'unk', 'real']
for what in ['F', 'L']:
    imgs = {s: per_image(s, what) for s in sets}
    for transform in ['raw', 'unit', 'lsm']:
        if what == 'F' and transform == 'lsm': continue
        def tf(x):
            if transform == 'unit': return unit(x)
            if transform == 'lsm': return lsm(x)
            return x
        means = {s: np.array([tf(x).mean(0) if len(x) else np.full(x.shape[1], np.nan) for x in imgs[s]]) for s in sets}
        ytr = lab('train')
        mu = np.stack([means['train'][ytr == c].mean(0) for c in range(len(classes))])
        R = means['train'] - mu[ytr]
        cov = np.cov(R.T) + 1e-6 * np.eye(R.shape[1]) * np.trace(np.cov(R.T)) / R.shape[1]
        P = np.linalg.inv(cov)
        def maha(M):
            dd = np.stack([np.einsum('ij,jk,ik->i', M - m, P, M - m) for m in mu], 1)
            return dd.min(1)
        s = {k: maha(v) for k, v in means.items()}
        report(f'{what}/{transform}: maha(image mean)', s['val'], s['known'], s['unk'], s['real'])
        # kNN on image means (train bank)
        def knn(M, k=3):
            dd = ((M[:, None, :] - means['train'][None]) ** 2).sum(-1)
            return np.sort(dd, 1)[:, k - 1]
        s = {k: knn(v) for k, v in means.items() if k != 'train'}
        report(f'{what}/{transform}: knn3(image mean)', s['val'], s['known'], s['unk'], s['real'])
        # window-level maha then mean
        Wtr = np.concatenate([tf(x) for x in imgs['train']])
        wlab = np.concatenate([np.full(len(x), c) for x, c in zip(imgs['train'], ytr)])
        wmu = np.stack([Wtr[wlab == c].mean(0) for c in range(len(classes))])
        WR = Wtr - wmu[wlab]
        wcov = np.cov(WR.T); wcov += 1e-4 * np.eye(len(wcov)) * np.trace(wcov) / len(wcov)
        WP = np.linalg.inv(wcov)
        def wmaha_img(x):
            if not len(x): return np.nan
            x = tf(x)
            dd = np.stack([np.einsum('ij,jk,ik->i', x - m, WP, x - m) for m in wmu], 1)
            # image-level: distance to best class of the mean of per-class window distances
            return dd.mean(0).min()
        s = {k: np.array([wmaha_img(x) for x in imgs[k]]) for k in sets if k != 'train'}
        report(f'{what}/{transform}: mean window maha, best class', s['val'], s['known'], s['unk'], s['real'])
