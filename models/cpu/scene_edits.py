"""The cpu profile's edits beyond whole-frame styles: weather (global freeform), recolouring one object
(local attribute: the object is found by colour, refined with GrabCut) and a subtitle (text). Each reads
what to do from the instruction's words, so an LLM planner's free wording reaches the same operator, and
the captioner uses the same measures to say whether a clip has an object to recolour or room for text."""

from __future__ import annotations

import re

import cv2
import numpy as np

# OpenCV hue (0-180) ranges of the colour words an instruction may use; red wraps around 0.
HUES: dict[str, tuple[tuple[int, int], ...]] = {
    "red": ((0, 8), (170, 180)),
    "orange": ((8, 20),),
    "yellow": ((20, 35),),
    "green": ((35, 85),),
    "cyan": ((85, 100),),
    "blue": ((100, 130),),
    "purple": ((130, 155),),
    "pink": ((155, 170),),
}
MIN_SATURATION, MIN_VALUE = 80, 50  # greyish or dark pixels have no colour to speak of
# Skin in YCrCb (Chai and Ngan, 1999), light to dark: its hue is orange or red, so without this a face was
# "the orange object" and was painted blue. A saturated orange or red object has Cr above 173.
SKIN_CR, SKIN_CB = (133, 173), (77, 127)
OBJECT_AREA = (0.004, 0.35)  # a coloured region between these fractions of the frame is one object
TEXT_BAND = 0.2  # a subtitle sits in the top or bottom fifth of the frame
PLAIN_BAND_GRADIENT = 40.0  # mean gradient magnitude below which a band is plain enough to read text on
MEASURE_WIDTH = 320


def skin(rgb: np.ndarray) -> np.ndarray:
    """Pixels of skin tone (bool [H,W]): a person is never the coloured object an attribute edit recolours."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])


def _hue_mask(rgb: np.ndarray, colour: str) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0]
    coloured = (hsv[..., 1] >= MIN_SATURATION) & (hsv[..., 2] >= MIN_VALUE) & ~skin(rgb)
    in_range = np.zeros(hue.shape, bool)
    for lo, hi in HUES[colour]:
        in_range |= (hue >= lo) & (hue < hi)
    mask = (coloured & in_range).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    return cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)


def colour_object(rgb: np.ndarray, colour: str) -> np.ndarray | None:
    """The largest connected region of `colour` (bool [H,W]) if it is object-sized, else None."""
    mask = _hue_mask(rgb, colour)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = stats[biggest, cv2.CC_STAT_AREA] / mask.size
    if not OBJECT_AREA[0] <= area <= OBJECT_AREA[1]:
        return None
    return labels == biggest


def most_distinct_object(rgb: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(colour, mask) of the largest object-sized single-colour region, or None when there is none."""
    found = [(c, m) for c in HUES if (m := colour_object(rgb, c)) is not None]
    return max(found, key=lambda cm: int(cm[1].sum()), default=None)


def refine_with_grabcut(rgb: np.ndarray, seed_mask: np.ndarray) -> np.ndarray:
    """GrabCut from the colour region (probably object), a ring around it (probably background) and the
    rest (background): the object's shaded and highlighted parts join it, its surroundings do not."""
    ring = cv2.dilate(seed_mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    gc = np.full(seed_mask.shape, cv2.GC_BGD, np.uint8)
    gc[ring] = cv2.GC_PR_BGD
    gc[seed_mask] = cv2.GC_PR_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few pixels of one kind to model: the colour region is the object
        return seed_mask
    refined = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return refined if refined.sum() >= seed_mask.sum() // 2 else seed_mask


def recolour(rgb: np.ndarray, source_colour: str, target_colour: str) -> np.ndarray:
    seed = colour_object(rgb, source_colour)
    if seed is None:
        raise ValueError(f"no {source_colour} object in the frame")
    mask = refine_with_grabcut(rgb, seed).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (0, 0), 1.5)[..., None]  # feathered edge: no hard cut-out line
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    lo, hi = HUES[target_colour][0]
    hsv[..., 0] = (lo + hi) // 2
    hsv[..., 1] = np.maximum(hsv[..., 1], 150)  # a shaded part of the object takes the new colour too
    new = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip(soft * new + (1 - soft) * rgb, 0, 255).astype(np.uint8)


def band_gradients(rgb: np.ndarray) -> dict[str, float]:
    """Mean gradient magnitude of the top and bottom bands, measured at one width so that the threshold
    means the same at every working size."""
    h, w = rgb.shape[:2]
    rgb = cv2.resize(rgb, (MEASURE_WIDTH, max(2, round(h * MEASURE_WIDTH / w))), interpolation=cv2.INTER_AREA)
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    band = max(1, int(len(g) * TEXT_BAND))
    return {"top": float(mag[:band].mean()), "bottom": float(mag[-band:].mean())}


def plain_band(rgb: np.ndarray) -> str | None:
    """'top' or 'bottom': the plainer band, if plain enough to read a subtitle on; None otherwise."""
    bands = band_gradients(rgb)
    where = min(bands, key=bands.__getitem__)
    return where if bands[where] < PLAIN_BAND_GRADIENT else None


def subtitle(rgb: np.ndarray, text: str, where: str) -> np.ndarray:
    """The text in white on a translucent dark strip, centred in the top or bottom band."""
    h, w = rgb.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = 1.0
    (tw, th), _ = cv2.getTextSize(text, font, scale, 2)
    scale = min(2.0, 0.9 * w / max(tw, 1), 0.5 * h * TEXT_BAND / max(th, 1))
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    band = int(h * TEXT_BAND)
    y = (band + th) // 2 if where == "top" else h - (band - th) // 2
    out = rgb.copy()
    top, bottom = max(0, y - th - base), min(h, y + base + 2)
    out[top:bottom] = (out[top:bottom].astype(np.float32) * 0.35).astype(np.uint8)
    cv2.putText(out, text, ((w - tw) // 2, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def fog(rgb: np.ndarray, seed: int) -> np.ndarray:
    del seed
    soft = cv2.GaussianBlur(rgb, (0, 0), max(1.0, rgb.shape[1] / 200)).astype(np.float32)
    return np.clip(0.5 * soft + 0.5 * np.array([205, 208, 212], np.float32), 0, 255).astype(np.uint8)


def _particles(rgb: np.ndarray, seed: int, count: float, length: int, tint: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    layer = np.zeros((h, w), np.float32)
    for x, y in zip(rng.integers(0, w, int(count * h * w)), rng.integers(0, h, int(count * h * w)), strict=True):
        cv2.line(layer, (int(x), int(y)), (int(x) - length // 3, int(y) + length), 1.0, 1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.6)[..., None]
    return np.clip(rgb.astype(np.float32) * (1 - layer) + tint * layer, 0, 255)


def snow(rgb: np.ndarray, seed: int) -> np.ndarray:
    cold = rgb.astype(np.float32) * np.array([0.9, 0.97, 1.08], np.float32) + 25
    flakes = _particles(np.clip(cold, 0, 255), seed, count=0.004, length=1, tint=255)
    return flakes.astype(np.uint8)


def rain(rgb: np.ndarray, seed: int) -> np.ndarray:
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float32)
    wet = (0.55 * rgb + 0.45 * grey) * np.array([0.72, 0.78, 0.88], np.float32)
    return _particles(wet, seed, count=0.003, length=max(4, rgb.shape[0] // 25), tint=200).astype(np.uint8)


WEATHER = {
    "fog": (fog, (r"\bfog", r"\bmist", r"\bhaz[ey]")),
    "snow": (snow, (r"\bsnow",)),
    "rain": (rain, (r"\brain",)),
}
COLOUR_WORD = re.compile(r"\b(" + "|".join(HUES) + r")\b")
QUOTED = re.compile(r"[\"“']([^\"”']{1,60})[\"”']")


def parse_weather(instruction: str) -> str | None:
    text = instruction.lower()
    return next((name for name, (_, keys) in WEATHER.items() if any(re.search(k, text) for k in keys)), None)


def parse_recolour(instruction: str) -> tuple[str, str] | None:
    """(source colour, target colour) from e.g. 'Make the red object blue.'; None without two colours."""
    words = COLOUR_WORD.findall(instruction.lower())
    if (
        len(words) < 2
        or words[0] == words[-1]
        or not re.search(r"\b(colou?r|make|turn|paint|change)", instruction.lower())
    ):
        return None
    return words[0], words[-1]


def parse_subtitle(instruction: str) -> tuple[str, str] | None:
    """(text, 'top' | 'bottom') from e.g. 'Add the subtitle "Hello" at the bottom.'"""
    quoted = QUOTED.search(instruction)
    if quoted is None or not re.search(r"subtitle|caption|text|title|sign", instruction.lower()):
        return None
    return quoted.group(1), "top" if re.search(r"\btop\b", instruction.lower()) else "bottom"
