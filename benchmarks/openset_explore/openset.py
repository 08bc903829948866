# ruff: noqa  -- scratch measurement script, kept verbatim as run (see README.md here)
import numpy as np

d = np.load('/tmp/scanlab-evidence/windows.npz')
def sets(name):
    P, E, C, Y, I = (d[f'{name}_{k}'] for k in 'PECYI')
    ev = (E >= 0.6) & (C <= 0.5)
    return P, ev, Y, I
def feat(P):
    L = np.log(np.maximum(P.astype(np.float64), 1e-30)); return L - L.mean(1, keepdims=True)
print('min p', d['val_P'].min(), (d['val_P']<1e-30).mean())
Pv, evv, Yv, Iv = sets('val')
Fv = feat(Pv)[evv]; Yvv = Yv[evv]
K = Pv.shape[1]
mu = np.stack([Fv[Yvv==k].mean(0) for k in range(K)])
R = Fv - mu[Yvv]; cov = R.T @ R / len(R) + 1e-3*np.eye(K)
prec = np.linalg.pinv(cov)
def maha(F):
    D = np.stack([np.einsum('ij,jk,ik->i', F-mu[k], prec, F-mu[k]) for k in range(K)], 1)
    return np.sqrt(D.min(1))
Fn = Fv / np.linalg.norm(Fv, axis=1, keepdims=True)
def knn(F, k=10):
    Fq = F/np.linalg.norm(F,axis=1,keepdims=True)
    S = Fq @ Fn.T
    return 1 - np.sort(S,1)[:, -k]
def msp(P): return 1 - P.max(1)
def entropy(P): return -(P*np.log(np.maximum(P,1e-30))).sum(1)
methods = {'msp': lambda P: msp(P), 'entropy': entropy, 'maha': lambda P: maha(feat(P)), 'knn': lambda P: knn(feat(P))}
def auroc(a, b):  # a known low, b unknown high
    x = np.concatenate([a,b]); r = x.argsort().argsort()
    return (r[len(a):].sum() - len(b)*(len(b)-1)/2) / (len(a)*len(b))
for mname, f in methods.items():
    sv = f(Pv)[evv]; qs = np.sort(sv)
    def img_scores(name, agg='mean'):
        P, ev, Y, I = sets(name); s = f(P); u = np.searchsorted(qs, s)/len(qs)
        out=[]; labs=[]; ok=[]
        for k in np.unique(I):
            m = (I==k)&ev
            if not m.any(): out.append(np.nan); ok.append(False); continue
            out.append(u[m].mean() if agg=='mean' else np.median(u[m]))
            votes=np.bincount(P[m].argmax(1), minlength=K); ok.append(votes.argmax()==Y[I==k][0])
        return np.array(out), np.array(ok)
    sV,_ = img_scores('val'); sK, okK = img_scores('known'); sU,_ = img_scores('unk'); sR,_ = img_scores('real')
    for q in [0.99, 1.0]:
        thr = np.quantile(sV, q) if q<1 else sV.max()
        thr = thr + 0.02
        print(f'{mname:8s} win-AUROC known/unk={auroc(f(sets("known")[0])[sets("known")[1]], f(sets("unk")[0])[sets("unk")[1]]):.3f} img-AUROC={auroc(sK, sU):.3f} thr(q{q})={thr:.3f} known-accepted&right={np.mean((sK<=thr)&okK):.3f} unk-rejected={np.mean(sU>thr):.3f} real={np.round(sR,2)}')
