# ruff: noqa  -- scratch measurement script, kept verbatim as run (see README.md here)
import numpy as np

d = np.load('/tmp/scanlab-evidence/windows.npz')
for name in ['val','known','unk','real']:
    E, C = d[f'{name}_E'], d[f'{name}_C']
    print(name, 'E pct', np.percentile(E,[1,5,10,25,50]).round(2), 'clip>0.5', (C>0.5).mean().round(3))
for name in ['val', 'known']:
    P, E, Y, C = d[f'{name}_P'], d[f'{name}_E'], d[f'{name}_Y'], d[f'{name}_C']
    ok = P.argmax(1) == Y
    for lo, hi in [(0,0.3),(0.3,0.6),(0.6,0.9),(0.9,1.2),(1.2,1.6),(1.6,2.5),(2.5,99)]:
        m = (E>=lo)&(E<hi)
        print(name, f'E in [{lo},{hi}) n={m.sum()} acc={ok[m].mean() if m.any() else 0:.3f}')
    m = C > 0.5
    print(name, 'clipped>0.5 n', m.sum(), 'acc', ok[m].mean() if m.any() else None)
    for t in [0.25, 0.5, 0.75]:
        m = C > t
        print(name, f'clipped>{t} n', m.sum(), 'acc', ok[m].mean() if m.any() else None)
