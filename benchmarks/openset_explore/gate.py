# ruff: noqa  -- scratch measurement script (input-gating detectors that were tried and NOT kept)
import numpy as np
from PIL import Image
from scanlab.core.io.imaging import load_scan, find_images

_MAX_SIDE = 2048


def _luma(pixels):
    h, w = pixels.shape[:2]
    y0, x0 = max(0, (h - _MAX_SIDE) // 2), max(0, (w - _MAX_SIDE) // 2)
    a = pixels[y0 : y0 + _MAX_SIDE, x0 : x0 + _MAX_SIDE].astype(np.float32)
    return a.mean(axis=2) if a.ndim == 3 else a


def line_pattern_ratio(pixels):
    y = _luma(pixels)
    rc = y[:, 1:-1] - 0.5 * (y[:, :-2] + y[:, 2:])
    rr = y[1:-1, :] - 0.5 * (y[:-2, :] + y[2:, :])
    return float(np.var(rc.mean(axis=0)) / max(np.var(rr.mean(axis=1)), 1e-12))


def resampling_peak(pixels):
    y = _luma(pixels)
    best = 0.0
    for prof in (np.abs(y[:, 2:] - 2 * y[:, 1:-1] + y[:, :-2]).mean(axis=0),
                 np.abs(y[2:, :] - 2 * y[1:-1, :] + y[:-2, :]).mean(axis=1)):
        n = len(prof)
        spec = np.abs(np.fft.rfft(prof - prof.mean()))
        f = np.arange(len(spec)) / n
        jpeg = np.min(np.abs(f[:, None] - np.arange(0, 5)[None, :] / 8.0), axis=1) < 2.0 / n
        keep = (f > 4.0 / n) & ~jpeg
        best = max(best, float(spec[keep].max() / max(np.median(spec[keep]), 1e-12)))
    return best


files = sorted(find_images('/tmp/scanlab-evidence/known-s2024'))[::5] + sorted(find_images('/tmp/scanlab-evidence/unknown-elsewhere'))[::10]
R = {'orig': [], 'rot': [], 'up1.25': [], 'down0.8': []}; P = {k: [] for k in R}
for f in files:
    px = load_scan(f).pixels
    vs = {'orig': px, 'rot': np.ascontiguousarray(np.rot90(px)),
          'up1.25': np.asarray(Image.fromarray(px).resize((640, 640), Image.BICUBIC)),
          'down0.8': np.asarray(Image.fromarray(px).resize((410, 410), Image.BICUBIC))}
    for k, v in vs.items():
        R[k].append(line_pattern_ratio(v)); P[k].append(resampling_peak(v))
for k in R: print(k, 'ratio pct', np.percentile(R[k], [0, 5, 50, 95, 100]).round(2), 'peak pct', np.percentile(P[k], [0, 5, 50, 95, 100]).round(1))
