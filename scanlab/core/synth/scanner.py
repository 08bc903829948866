"""Virtual flatbed scanners: model design parameters, units, and the scan pipeline.

Physical picture (rows = the motor's scan direction, columns = along the line sensor):

1. **Motor.** Row ``i`` of the output samples the page at ``y(i) = i * (1 + speed) +
   banding(i) + jitter(i)``: a small speed error, periodic stepper-motor banding and
   an AR(1) jitter. Rows are resampled with the firmware's interpolation (linear or
   cubic), so the blur varies from row to row with the fractional position.
2. **Colour lines.** A CCD scanner has separate R, G and B sensor lines a few lines
   apart; after resampling to the output resolution each colour is displaced by a
   model-specific sub-pixel amount along the scan direction. A CIS scanner flashes
   R, G, B LEDs in turn, which also shifts the channels by a fraction of a line.
   A small lateral shift along the columns models chromatic aberration.
3. **Optics.** Anisotropic Gaussian blur (the lens and the sensor pitch differ
   across and along the sensor), slightly wider for blue.
4. **Illumination and sensor.** Lamp falloff across the columns, lamp flicker
   banding down the rows, and per-column gain (PRNU residual after shading
   calibration) and dark offset, per colour channel, *repeated down every row*.
   The column pattern belongs to a **unit**; everything else to the **model**.
5. **Noise.** Shot noise (Poisson, approximated as Gaussian with variance equal to
   the electron count, full well model-specific) and read noise.
6. **Processing.** Colour-correction matrix (neutral-preserving), tone curve
   (gamma, black and white points), firmware sharpening (unsharp mask) or
   denoising, 8-bit quantisation.
7. **Output format.** JPEG with the model's quality and chroma subsampling, or
   lossless PNG / TIFF.

Every parameter is small (invisible at normal viewing) but consistent, which is
what a CNN on 64x64 patches can learn. Model identity is carried by traits that are
visible from *any* 64x64 position (channel misregistration, blur anisotropy,
sharpening, noise level, tone curve, banding period, JPEG quality); units of the
same model differ only in the column pattern.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from scanlab.core.synth.dsp import ar1, gaussian_blur, resample_axis, rng_for, stable_seed

MAX_SENSOR_COLUMNS = 8192  # longest line sensor simulated (wider scans repeat the pattern)

# Output formats: (container, JPEG quality, chroma subsampling as Pillow's code).
# Pillow: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
_FORMATS: tuple[tuple[str, int, int], ...] = (
    ("jpeg", 95, 0),
    ("jpeg", 90, 2),
    ("png", 0, 0),
    ("jpeg", 85, 2),
    ("jpeg", 92, 1),
    ("tiff", 0, 0),
    ("jpeg", 80, 2),
    ("jpeg", 88, 0),
    ("jpeg", 93, 2),
    ("jpeg", 97, 1),
)
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif"}


@dataclass(frozen=True)
class ScannerDesign:
    """Design parameters shared by every unit of one scanner model (all seeded by bank)."""

    name: str
    bank: str
    index: int
    sensor: str  # "CCD" or "CIS"
    line_offsets: tuple[float, float, float]  # R, G, B shift along the scan direction (px)
    lateral_shift: tuple[float, float, float]  # R, G, B shift along the sensor (px)
    interpolation: str  # "linear" or "cubic" row resampling
    speed_error: float  # relative motor speed error
    band_period: float  # stepper banding period (rows)
    band_amplitude: float  # banding displacement amplitude (px)
    jitter: float  # AR(1) motor jitter std (px)
    flicker_period: float  # lamp flicker period (rows)
    flicker_amplitude: float  # relative lamp flicker
    blur_rows: float  # optics Gaussian sigma down the rows (px)
    blur_cols: float  # optics Gaussian sigma along the sensor (px)
    full_well: float  # electrons at white (shot noise ~ 1/sqrt)
    read_noise: float  # electrons
    prnu: float  # std of residual per-column gain after calibration
    dsnu: float  # std of per-column dark offset (fraction of full scale)
    gamma: float  # tone curve exponent (output = linear ** (1/gamma))
    black_point: float  # output level of black (fraction)
    white_point: float  # output level of paper white (fraction)
    crosstalk: float  # colour-correction off-diagonal strength
    firmware: str  # "sharpen", "denoise" or "none"
    firmware_amount: float
    firmware_radius: float
    format: str  # "jpeg", "png" or "tiff"
    jpeg_quality: int
    subsampling: int

    @property
    def extension(self) -> str:
        """File suffix of the output format."""
        return EXTENSIONS[self.format]

    def to_dict(self) -> dict:
        """Plain-JSON view (for provenance files)."""
        return asdict(self)

    def unit(self, serial: int = 0) -> ScannerUnit:
        """The physical unit ``serial`` of this model (its own sensor column pattern)."""
        rng = rng_for("scanlab-unit", self.bank, self.index, serial)
        gain = 1.0 + self.prnu * rng.standard_normal((MAX_SENSOR_COLUMNS, 3)).astype(np.float32)
        dark = self.dsnu * np.abs(rng.standard_normal((MAX_SENSOR_COLUMNS, 3))).astype(np.float32)
        return ScannerUnit(self, serial, gain, dark)


@dataclass(frozen=True, eq=False)
class ScannerUnit:
    """One physical scanner: a model's design plus this unit's column gain and offset."""

    design: ScannerDesign
    serial: int
    column_gain: np.ndarray  # (MAX_SENSOR_COLUMNS, 3)
    column_dark: np.ndarray  # (MAX_SENSOR_COLUMNS, 3)

    @property
    def name(self) -> str:
        """``<model>#<serial>``."""
        return f"{self.design.name}#{self.serial}"


def scanner_name(bank: str, index: int) -> str:
    """Folder/class name of scanner ``index`` (0-based) of ``bank``."""
    prefix = "vscan" if bank == "default" else bank
    return f"{prefix}-{index + 1:02d}"


def _latin_levels(bank: str, block: int, trait: str, n: int = 10) -> np.ndarray:
    """A permutation of 0..n-1 for one trait in one block of ten models.

    Why a Latin design rather than independent draws: with independent draws two
    of ten models can land close in every trait and become indistinguishable. A
    permutation per trait guarantees every pair of models in a block differs in
    every continuous trait by at least one level.
    """
    return rng_for("scanlab-latin", bank, block, trait).permutation(n)


def design(bank: str, index: int) -> ScannerDesign:
    """Design parameters of scanner ``index`` of ``bank`` (depends on nothing else)."""
    if index < 0:
        raise ValueError("scanner index must be >= 0")
    block, slot = divmod(index, 10)
    jitter_rng = rng_for("scanlab-design", bank, index)

    def level(trait: str, lo: float, hi: float) -> float:
        # level in 0..9 spread across [lo, hi], with a little jitter inside the level
        k = _latin_levels(bank, block, trait)[slot]
        return float(lo + (k + jitter_rng.uniform(0.3, 0.7)) / 10.0 * (hi - lo))

    sensor = "CIS" if _latin_levels(bank, block, "sensor")[slot] % 3 == 0 else "CCD"
    # channel misregistration along the scan direction: the strongest model trait
    mis = level("misregistration", -0.6, 0.6)
    skew = level("misregistration_skew", -0.35, 0.35)
    if sensor == "CIS":
        # time-multiplexed LEDs: channels sampled a fraction of a line apart
        line = (mis, mis + 0.33 + 0.5 * skew, mis + 0.66)
    else:
        line = (mis, 0.0, skew)
    lateral = level("lateral", -0.3, 0.3)
    fw_k = _latin_levels(bank, block, "firmware")[slot]
    firmware = ("sharpen", "denoise", "none")[fw_k % 3]
    fmt, q, sub = _FORMATS[_latin_levels(bank, block, "format")[slot]]
    return ScannerDesign(
        name=scanner_name(bank, index),
        bank=bank,
        index=index,
        sensor=sensor,
        line_offsets=tuple(round(v, 4) for v in line),
        lateral_shift=(round(lateral, 4), 0.0, round(-0.6 * lateral, 4)),
        interpolation="cubic" if _latin_levels(bank, block, "interp")[slot] % 2 else "linear",
        speed_error=level("speed", -0.003, 0.003),
        band_period=level("band_period", 5.0, 40.0),
        band_amplitude=level("band_amplitude", 0.05, 0.3),
        jitter=level("jitter", 0.01, 0.08),
        flicker_period=level("flicker_period", 3.0, 30.0),
        flicker_amplitude=level("flicker_amplitude", 0.0, 0.012),
        blur_rows=level("blur_rows", 0.35, 1.1),
        blur_cols=level("blur_cols", 0.35, 1.1),
        full_well=float(np.exp(level("full_well", np.log(3000.0), np.log(60000.0)))),
        read_noise=level("read_noise", 2.0, 30.0),
        prnu=level("prnu", 0.002, 0.008),
        dsnu=level("dsnu", 0.0005, 0.003),
        gamma=level("gamma", 2.12, 2.28),
        black_point=level("black_point", 0.016, 0.026),
        white_point=level("white_point", 0.965, 0.98),
        crosstalk=level("crosstalk", -0.03, 0.03),
        firmware=firmware,
        firmware_amount=level("firmware_amount", 0.25, 0.9) if firmware != "none" else 0.0,
        firmware_radius=level("firmware_radius", 0.6, 1.6) if firmware != "none" else 0.0,
        format=fmt,
        jpeg_quality=q,
        subsampling=sub,
    )


def bank(name: str = "default", n: int = 10) -> list[ScannerDesign]:
    """The first ``n`` scanner models of bank ``name``."""
    return [design(name, i) for i in range(n)]


def _colour_matrix(c: float) -> np.ndarray:
    """A neutral-preserving colour-correction matrix (rows sum to 1)."""
    m = np.array([[1.0, c, -0.5 * c], [-0.5 * c, 1.0, c], [c, -0.5 * c, 1.0]], dtype=np.float32)
    return m / m.sum(axis=1, keepdims=True)


def scan(unit: ScannerUnit, page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scan a page with ``unit``.

    Parameters
    ----------
    unit : ScannerUnit
    page : ndarray
        Linear reflectance, float32 (H + 8, W, 3) in [0, 1]: the printed page,
        with 8 spare rows so that motor speed error and banding stay inside.
    rng : Generator
        Per-scan randomness (noise, banding and flicker phase, jitter).

    Returns
    -------
    ndarray
        uint8 (H, W, 3): the scanner's processed output before file encoding.
    """
    d = unit.design
    h = page.shape[0] - 8
    w = page.shape[1]
    i = np.arange(h, dtype=np.float64)
    # 1. motor: speed error, banding, jitter (same for all three colour lines)
    y = 4.0 + i * (1.0 + d.speed_error)
    y += d.band_amplitude * np.sin(2 * np.pi * i / d.band_period + rng.uniform(0, 2 * np.pi))
    y += ar1(h, 0.9, d.jitter * np.sqrt(1 - 0.81), rng)
    cols = np.arange(w, dtype=np.float64)
    chans = []
    for c in range(3):
        # 2. colour-line offsets along rows, chromatic lateral shift along columns
        ch = resample_axis(page[:, :, c], y + d.line_offsets[c], axis=0, kind=d.interpolation)
        if abs(d.lateral_shift[c]) > 1e-6:
            ch = resample_axis(ch, cols + d.lateral_shift[c], axis=1, kind=d.interpolation)
        # 3. optics (blue focuses slightly worse)
        f = 1.15 if c == 2 else 1.0
        chans.append(gaussian_blur(ch, d.blur_rows * f, d.blur_cols * f))
    img = np.stack(chans, axis=2)
    # 4. illumination and the unit's column pattern, repeated down every row
    x = (cols - w / 2) / max(w, 1)
    falloff = (1.0 - 0.02 * x**2).astype(np.float32)
    flicker = 1.0 + d.flicker_amplitude * np.sin(2 * np.pi * i / d.flicker_period + rng.uniform(0, 2 * np.pi))
    reps = -(-w // MAX_SENSOR_COLUMNS)
    gain = np.tile(unit.column_gain, (reps, 1))[:w]
    dark = np.tile(unit.column_dark, (reps, 1))[:w]
    img *= falloff[None, :, None] * flicker.astype(np.float32)[:, None, None] * gain[None]
    # 5. shot and read noise in electrons
    e = img * np.float32(d.full_well)
    e += np.sqrt(np.maximum(e, 0)) * rng.standard_normal(e.shape, dtype=np.float32)
    e += np.float32(d.read_noise) * rng.standard_normal(e.shape, dtype=np.float32)
    lin = e / np.float32(d.full_well) + dark[None]
    # 6. colour correction, tone curve, firmware
    lin = lin @ _colour_matrix(d.crosstalk).T
    tone = np.clip(lin, 0, None) ** np.float32(1.0 / d.gamma)
    out = d.black_point + (d.white_point - d.black_point) * tone
    if d.firmware != "none":
        r = d.firmware_radius
        soft = gaussian_blur(out, r, r)
        if d.firmware == "sharpen":
            out = out + d.firmware_amount * (out - soft)
        else:
            out = out - d.firmware_amount * (out - soft)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, d: ScannerDesign) -> bytes:
    """Encode uint8 (H, W, 3) pixels in the scanner's output format (deterministic bytes)."""
    im = Image.fromarray(pixels, "RGB")
    buf = io.BytesIO()
    if d.format == "jpeg":
        im.save(buf, "JPEG", quality=d.jpeg_quality, subsampling=d.subsampling, optimize=False)
    elif d.format == "png":
        im.save(buf, "PNG", compress_level=6)
    else:
        im.save(buf, "TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode bytes written by :func:`encode` back to uint8 (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def unit_for_image(d: ScannerDesign, image_index: int, units: int) -> ScannerUnit:
    """The unit that scans image ``image_index`` when a model has ``units`` units."""
    return d.unit(image_index % max(1, units))


__all__ = [
    "ScannerDesign",
    "ScannerUnit",
    "bank",
    "decode",
    "design",
    "encode",
    "scan",
    "scanner_name",
    "stable_seed",
    "unit_for_image",
]
