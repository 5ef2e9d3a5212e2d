"""Heatmap overlays as PNG, drawn with Pillow (already a dependency; matplotlib stays optional).

The colour scale is diverging and centred on the detector's threshold: patches on the generated
side are drawn in oranges to red (the further past the threshold, the redder), patches on the real
side in light to deep blue, so "flagged" reads as "warm" whatever the score's units. Binary maps
span p(fake) 0..1; one-class maps span the log-likelihoods of the map (low = generated), widened
to include the threshold. Under the picture a legend: the scale with its end values, the threshold
marked, the detector and context; flagged regions are outlined.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sdaie.atomic import atomic_write_bytes
from sdaie.heatmaps import PatchMap, Region, block_mean

REAL_END = np.array([33, 102, 172], np.float64)  # deep blue
REAL_NEAR = np.array([209, 229, 240], np.float64)
FAKE_NEAR = np.array([253, 219, 199], np.float64)
FAKE_END = np.array([178, 24, 43], np.float64)  # deep red
OPACITY = 0.55
LEGEND_H = 62


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


def score_range(pm: PatchMap) -> tuple[float, float]:
    """(low, high) of the colour scale: 0..1 for p(fake); else the 2nd to 98th percentile of
    the finite scores (one extreme patch does not wash out the rest; beyond the ends the colour
    saturates), widened to include the threshold with a margin."""
    if pm.detector == "bc":
        return 0.0, 1.0
    finite = pm.scores[np.isfinite(pm.scores)]
    t = pm.threshold
    lo, hi = ((float(np.percentile(finite, 2)), float(np.percentile(finite, 98))) if finite.size
              else (t, t))
    pad = max(hi - lo, abs(t), 1.0) * 0.05
    return min(lo, t - pad), max(hi, t + pad)


def colours(values: np.ndarray, pm: PatchMap, lo: float, hi: float) -> np.ndarray:
    """RGB float ``[..., 3]`` of scores: position past the threshold on its own side, 0..1."""
    t = pm.threshold
    v = np.asarray(values, np.float64)
    flagged = pm.decision.predict_fake(v)
    fake_span = (hi - t) if pm.fake_when_higher else (t - lo)
    real_span = (t - lo) if pm.fake_when_higher else (hi - t)
    dist = np.abs(np.nan_to_num(v, nan=lo if not pm.fake_when_higher else hi) - t)
    x = np.clip(np.where(flagged, dist / max(fake_span, 1e-12), dist / max(real_span, 1e-12)),
                0, 1)[..., None]
    fake = FAKE_NEAR + (FAKE_END - FAKE_NEAR) * x
    real = REAL_NEAR + (REAL_END - REAL_NEAR) * x
    return np.where(flagged[..., None], fake, real)


def _heat_layer(pm: PatchMap, size: tuple[int, int], scale: float,
                lo: float, hi: float) -> tuple[Image.Image, Image.Image]:
    """(colour layer, alpha layer) of the scaled image size."""
    w, h = size
    colour = Image.new("RGB", (w, h))
    alpha = Image.new("L", (w, h), 0)
    g = pm.grid
    if g.resized:
        colour.paste(tuple(int(c) for c in colours(pm.scores.reshape(-1)[:1], pm, lo, hi)[0]),
                     (0, 0, w, h))
        alpha.paste(int(255 * OPACITY), (0, 0, w, h))
        return colour, alpha
    blocks = block_mean(pm.scores, g)
    rgb = Image.fromarray(colours(blocks, pm, lo, hi).round().astype(np.uint8), "RGB")
    x0, y0 = round(g.left * scale), round(g.top * scale)
    bw = round((g.left + blocks.shape[1] * g.stride) * scale) - x0
    bh = round((g.top + blocks.shape[0] * g.stride) * scale) - y0
    colour.paste(rgb.resize((max(bw, 1), max(bh, 1)), Image.NEAREST), (x0, y0))
    alpha.paste(int(255 * OPACITY), (max(x0, 0), max(y0, 0), x0 + bw, y0 + bh))
    return colour, alpha


def _legend(canvas: Image.Image, pm: PatchMap, top: int, width: int, lo: float,
            hi: float) -> None:
    """Title, colour bar with the threshold marked, end values below, threshold value under its
    mark."""
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    what = ("binary p(fake)" if pm.detector == "bc" else
            "one-class log p (low = generated)")
    draw.text((6, top + 2), f"{what}; {pm.context}", fill=(0, 0, 0), font=font)
    x0, x1, y0, y1 = 6, width - 6, top + 17, top + 29
    ramp = np.linspace(lo, hi, x1 - x0)
    bar = colours(ramp, pm, lo, hi).round().astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(bar[None], y1 - y0, 0), "RGB"), (x0, y0))
    tx = x0 + round((pm.threshold - lo) / (hi - lo) * (x1 - x0)) if hi > lo else x0
    draw.line([(tx, y0 - 3), (tx, y1 + 3)], fill=(0, 0, 0), width=2)
    draw.text((x0, y1 + 3), _fmt(lo), fill=(0, 0, 0), font=font)
    hi_label = _fmt(hi)
    draw.text((x1 - draw.textlength(hi_label, font=font), y1 + 3), hi_label, fill=(0, 0, 0),
              font=font)
    label = f"threshold {_fmt(pm.threshold)}"
    lw = draw.textlength(label, font=font)
    draw.text((min(max(tx - lw / 2, x0), x1 - lw), y1 + 16), label, fill=(0, 0, 0), font=font)


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.3g}"


def render_overlay(img: Image.Image, pm: PatchMap, regions: list[Region] | None = None,
                   max_side: int = 1024) -> Image.Image:
    """The image (scaled to at most ``max_side``) with the map blended in, flagged regions
    outlined, and the legend strip below."""
    scale = min(1.0, max_side / max(img.size))
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    base = img.convert("RGB").resize((w, h), Image.BILINEAR) if scale < 1 else img.convert("RGB")
    lo, hi = score_range(pm)
    colour, alpha = _heat_layer(pm, (w, h), scale, lo, hi)
    pic = Image.composite(colour, base, alpha)
    width = max(w, 240)
    canvas = Image.new("RGB", (width, h + LEGEND_H), (255, 255, 255))
    canvas.paste(pic, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for r in regions if regions is not None else pm.regions():
        x0, y0, x1, y1 = (round(v * scale) for v in r.box)
        draw.rectangle([x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)], outline=(255, 255, 0), width=2)
    _legend(canvas, pm, h, width, lo, hi)
    return canvas


def figure(rows: list[list[Image.Image]], captions: list[str], column_titles: list[str],
           cell: int = 256) -> Image.Image:
    """A grid of pictures (each scaled to ``cell`` wide), a title per column, a caption per row."""
    font = _font(13)
    scaled = [[p.resize((cell, max(1, round(p.height * cell / p.width))), Image.BILINEAR)
               for p in row] for row in rows]
    heights = [max(p.height for p in row) + 20 for row in scaled]
    ncol = max(len(r) for r in scaled)
    canvas = Image.new("RGB", (ncol * (cell + 8) + 8, 24 + sum(heights)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(column_titles):
        draw.text((8 + j * (cell + 8), 4), title, fill=(0, 0, 0), font=font)
    y = 24
    for row, caption, rh in zip(scaled, captions, heights):
        draw.text((8, y), caption, fill=(60, 60, 60), font=font)
        for j, p in enumerate(row):
            canvas.paste(p, (8 + j * (cell + 8), y + 18))
        y += rh
    return canvas


def write_heatmap(img: Image.Image, pm: PatchMap, regions: list[Region], png: Path,
                  npz: Path, max_side: int = 1024, **meta: object) -> None:
    """The overlay PNG and the raw map ``.npz`` of one image (both written atomically)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    render_overlay(img, pm, regions, max_side).save(buf, format="PNG")
    atomic_write_bytes(png, buf.getvalue())
    pm.save(npz, regions=[r.as_dict() for r in regions], **meta)
