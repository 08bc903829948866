# ruff: noqa  -- scratch measurement script, kept verbatim as run (see README.md here)
import numpy as np

d = np.load('/tmp/scanlab-evidence/windows.npz'); ft = np.load('/tmp/scanlab-evidence/feats.npz')
K=10
def sets(name):
    P, E, C, Y, I = (d[f'{name}_{k}'] for k in 'PECYI')
    return P, (E >= 0.6) & (C <= 0.5), Y, I, ft[name].astype(np.float64)
Pv, evv, Yv, Iv, Fv_all = sets('val')
Fv = Fv_all[evv]; Yvv = Yv[evv]
mu = np.stack([Fv[Yvv==k].mean(0) for k in range(K)])
R = Fv - mu[Yvv]; cov = R.T @ R / len(R); cov += 1e-4*np.trace(cov)/96*np.eye(96)
prec = np.linalg.inv(cov)
def maha(F):
    D = np.stack([np.einsum('ij,jk,ik->i', F-mu[k], prec, F-mu[k]) for k in range(K)], 1); return np.sqrt(D.min(1))
Fn = Fv/np.linalg.norm(Fv,axis=1,keepdims=True)
def knn(F, k=10):
    S = (F/np.linalg.norm(F,axis=1,keepdims=True)) @ Fn.T; return 1-np.sort(S,1)[:,-k]
def auroc(a,b):
    x=np.concatenate([a,b]); r=x.argsort().argsort(); return (r[len(a):].sum()-len(b)*(len(b)-1)/2)/(len(a)*len(b))
for mname, f in {'maha-feat': maha, 'knn-feat': knn}.items():
    qs = np.sort(f(Fv))
    def img(name):
        P, ev, Y, I, F = sets(name); u = np.searchsorted(qs, f(F))/len(qs); out=[]; ok=[]; vf=[]
        for k in np.unique(I):
            m=(I==k)&ev
            if not m.any(): out.append(np.nan); ok.append(False); vf.append(np.nan); continue
            out.append(u[m].mean()); v=np.bincount(P[m].argmax(1),minlength=K); ok.append(v.argmax()==Y[I==k][0]); vf.append(v.max()/m.sum())
        return np.array(out), np.array(ok), np.array(vf)
    sV,_,_=img('val'); sK,okK,vK=img('known'); sU,_,vU=img('unk'); sR,_,_=img('real')
    P,ev,_,_,F = sets('known'); Pu,evu,_,_,Fu=sets('unk')
    print(mname, 'win AUROC', auroc(f(F[ev]), f(Fu[evu])).round(3), 'img AUROC', auroc(sK,sU).round(3), 'val max', sV.max().round(3), 'val q99', np.quantile(sV,.99).round(3))
    for thr in [sV.max()+0.02, np.quantile(sV,.99), 0.7, 0.75, 0.8]:
        print(f'   thr={thr:.3f} known acc&right={np.mean((sK<=thr)&okK):.3f} unk rej={np.mean(sU>thr):.3f}  +vf0.5: known={np.mean((sK<=thr)&okK&(vK>=0.5)):.3f} unk={np.mean((sU>thr)|(vU<0.5)):.3f}')
    print('   real', np.round(sR,3), 'known sorted top', np.sort(sK)[-5:].round(3), 'unk low', np.sort(sU)[:8].round(3))
