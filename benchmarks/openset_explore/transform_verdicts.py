# ruff: noqa  -- scratch measurement script (see README.md here)
"""Verdicts of fresh known scans turned by 90 degrees or resampled (x0.8, x1.25 bicubic), per model.

    python benchmarks/openset_explore/transform_verdicts.py MODEL [MODEL ...]
"""
import dataclasses, sys
import numpy as np, torch
from PIL import Image
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.modelfile.store import load_model
from scanlab.services.analysis import AnalysisRequest, run_analysis

torch.set_num_threads(2)
files = sorted(find_images('/tmp/scanlab-evidence/known-s2024'))[::5]  # 20 scans, 2 per scanner
transforms = {
    'turned anticlockwise': lambda px: np.ascontiguousarray(np.rot90(px, 1)),
    'turned clockwise': lambda px: np.ascontiguousarray(np.rot90(px, 3)),
    'resampled x0.8': lambda px: np.asarray(Image.fromarray(px).resize((410, 410), Image.BICUBIC)),
    'resampled x1.25': lambda px: np.asarray(Image.fromarray(px).resize((640, 640), Image.BICUBIC)),
}
for path in sys.argv[1:]:
    lm = load_model(path)
    for name, t in transforms.items():
        res = {}
        for f in files:
            s = load_scan(f)
            r = run_analysis(AnalysisRequest(path=str(f), with_map=False), model=lm, scan=dataclasses.replace(s, pixels=t(s.pixels)))
            v = r.verdict.verdict
            if v == 'attributed':
                v = 'attributed, right' if r.label == f.parent.name else 'attributed, WRONG'
            v += ' +rotated_90' if any(w['code'] == 'rotated_90' for w in r.verdict.warnings) else ''
            res[v] = res.get(v, 0) + 1
        print(path.split('/')[-1], name, dict(sorted(res.items())), flush=True)
