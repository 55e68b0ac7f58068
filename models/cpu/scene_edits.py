"""The cpu profile's edits beyond whole-frame styles: weather (global freeform), recolouring one object
(local attribute: the object is found by colour, refined with GrabCut) and a subtitle (text). Each reads
what to do from the instruction's words, so an LLM planner's free wording reaches the same operator, and
the captioner uses the same measures to say whether a clip has an object to recolour or room for text."""

from __future__ import annotations

import re

import cv2
import numpy as np

from models.cpu.overlay import filled

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
OBJECT_AREA = (0.004, 0.35)  # an object's extent is between these fractions of the frame
OBJECT_GAP = 0.07  # regions of one colour closer than this fraction of the frame's short side are one object
# A recolour reaches the object's shaded and pale parts: a pixel takes the new colour in full from the object
# colour's saturation and value, in part down to these, and in part up to HUE_FEATHER hue steps off its hue range.
PALE_SATURATION, DARK_VALUE, HUE_FEATHER = 35, 25, 8.0
VIVID = (120, 80)  # an object's coloured pixels have at least this median saturation and value (0-255)
# An object stands out from its surroundings: at most this share of a ring around it is saturated and within
# SURROUNDING_HUE hue steps of its colour (a yellower patch of a green field is no object).
SURROUNDING_HUE, SURROUNDING_ALIKE = 12, 0.25
NEW_SATURATION = 170  # a recoloured pixel is at least this saturated: the new colour shows
# Light colours: at a dark blue's value, yellow reads as olive and orange as brown. An object recoloured to one
# is lightened until its typical pixel is this bright.
MIN_VALUE_OF = {"yellow": 220, "orange": 200, "cyan": 180, "pink": 180}
TEXT_BAND = 0.2  # a subtitle sits in the top or bottom fifth of the frame
PLAIN_BAND_GRADIENT = 40.0  # mean gradient magnitude below which a band is plain enough to read text on
MEASURE_WIDTH = 320


def skin(rgb: np.ndarray) -> np.ndarray:
    """Pixels of skin tone (bool [H,W]): a person is never the coloured object an attribute edit recolours."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])


def hue_mask(rgb: np.ndarray, colour: str, pale: bool = False) -> np.ndarray:
    """Pixels of `colour` (bool [H,W]): saturated and bright enough to have a colour, and not skin. `pale`: the
    colour's paler and darker shades too (an object's shaded or highlighted parts)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    least = (PALE_SATURATION, DARK_VALUE) if pale else (MIN_SATURATION, MIN_VALUE)
    coloured = (hsv[..., 1] >= least[0]) & (hsv[..., 2] >= least[1]) & ~skin(rgb)
    return coloured & in_hue(hsv[..., 0], colour)


def in_hue(hue: np.ndarray, colour: str) -> np.ndarray:
    found = np.zeros(hue.shape, bool)
    for lo, hi in HUES[colour]:
        found |= (hue >= lo) & (hue < hi)
    return found


def colour_object(rgb: np.ndarray, colour: str) -> np.ndarray | None:
    """Where the largest object of `colour` is (bool [H,W]), if there is one of an object's size. An object is
    the pixels of that colour grouped with those close by (a striped seat's stripes, a car's panels between its
    windows), grown into the colour's paler and darker shades that touch it (a stripe in the light), with
    everything between them: its extent, of which object_pixels are the coloured part."""
    opened = np.ones((3, 3), np.uint8)
    strong = cv2.morphologyEx(hue_mask(rgb, colour).astype(np.uint8), cv2.MORPH_OPEN, opened)  # specks are no object
    if not strong.any():
        return None
    gap = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, round(min(rgb.shape[:2]) * OBJECT_GAP)) | 1,) * 2)
    n, labels = cv2.connectedComponents(cv2.morphologyEx(strong, cv2.MORPH_CLOSE, gap), connectivity=8)
    counts = np.bincount(labels[strong > 0], minlength=n)
    counts[0] = 0
    core = labels == int(np.argmax(counts))
    # Shades join the object only close to it: a muted scene's bluish greys would carry a blue sign into the wall.
    near = cv2.dilate(core.astype(np.uint8), gap, iterations=2) > 0
    shades = (hue_mask(rgb, colour, pale=True) & near) | core
    n, labels = cv2.connectedComponents(cv2.morphologyEx(shades.astype(np.uint8), cv2.MORPH_CLOSE, gap), connectivity=8)
    extent = filled(np.isin(labels, np.unique(labels[core])) & (labels > 0))
    sides = sum(bool(edge.any()) for edge in (extent[0], extent[-1], extent[:, 0], extent[:, -1]))
    # Sky, a field, a wall run off the frame on several sides; an object in view leaves it on one at most.
    if sides > 1 or not OBJECT_AREA[0] <= extent.mean() <= OBJECT_AREA[1]:
        return None
    return extent if vivid(rgb, colour, extent) and stands_out(rgb, colour, extent) else None


def vivid(rgb: np.ndarray, colour: str, extent: np.ndarray) -> bool:
    """Whether the object's coloured pixels are, typically, saturated and bright: a painted or dyed object, not
    dark foliage or a shadowed wall that happens to lean toward a hue."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[object_pixels(rgb, colour, extent)]
    return len(hsv) > 0 and bool(np.median(hsv[:, 1]) >= VIVID[0] and np.median(hsv[:, 2]) >= VIVID[1])


def hue_distance(hue: np.ndarray, colour: str) -> np.ndarray:
    """Hue steps (OpenCV's 0-180 circle) from each pixel's hue to the nearest hue of `colour`'s range."""
    gap = np.full(hue.shape, 90.0, np.float32)
    for lo, hi in HUES[colour]:
        outside = np.maximum(np.maximum(lo - hue.astype(np.float32), hue - (hi - 1.0)), 0)
        gap = np.minimum(gap, np.minimum(outside, 180 - outside))
    return gap


def stands_out(rgb: np.ndarray, colour: str, extent: np.ndarray) -> bool:
    """Whether the object differs from what surrounds it: few pixels around it share its colour or a
    neighbouring one. A yellower patch of a green field does not; a blue seat in a grey car does."""
    width = max(3, round(min(rgb.shape[:2]) * OBJECT_GAP * 2)) | 1
    ring = cv2.dilate(extent.astype(np.uint8), np.ones((width, width), np.uint8)).astype(bool) & ~extent
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    alike = (hsv[..., 1] >= MIN_SATURATION) & (hue_distance(hsv[..., 0], colour) <= SURROUNDING_HUE)
    return not ring.any() or float(alike[ring].mean()) <= SURROUNDING_ALIKE


def object_pixels(rgb: np.ndarray, colour: str, extent: np.ndarray) -> np.ndarray:
    """The pixels of `colour` within an object's extent (bool [H,W]): what recolouring it changes."""
    return extent & hue_mask(rgb, colour)


def most_distinct_object(rgb: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(colour, extent) of the largest object-sized single-colour object, or None when there is none."""
    found = [(c, m) for c in HUES if (m := colour_object(rgb, c)) is not None]
    return max(found, key=lambda cm: int(object_pixels(rgb, cm[0], cm[1]).sum()), default=None)


def recolour_weight(rgb: np.ndarray, colour: str, extent: np.ndarray) -> np.ndarray:
    """float32 [H,W] in 0..1: how much of each pixel of the object takes the new colour. The object's pixels of
    its colour fully, its shaded and paler ones (less saturated, a hue or two off) in part, and nothing else: a
    striped seat's white stripes stay white."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    near_hue = np.clip(1 - hue_distance(hsv[..., 0], colour) / HUE_FEATHER, 0, 1)
    saturated = np.clip((hsv[..., 1] - PALE_SATURATION) / (MIN_SATURATION - PALE_SATURATION), 0, 1)
    lit = np.clip((hsv[..., 2] - DARK_VALUE) / (MIN_VALUE - DARK_VALUE), 0, 1)
    # Per pixel, not blurred: a pixel half blue at a stripe's edge is half recoloured, a white one not at all.
    around = cv2.dilate(extent.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # its rim
    return (near_hue * saturated * lit * ~skin(rgb) * around).astype(np.float32)


def recolour(rgb: np.ndarray, source_colour: str, target_colour: str) -> np.ndarray:
    """The object of `source_colour`, all of it, in `target_colour`: its hue turned, its saturation kept at a
    clearly coloured level, and a dark object lightened toward the new colour's own lightness (a dark blue seat
    turns yellow, not olive)."""
    extent = colour_object(rgb, source_colour)
    if extent is None:
        raise ValueError(f"no {source_colour} object in the frame")
    weight = recolour_weight(rgb, source_colour, extent)[..., None]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    lo, hi = HUES[target_colour][0]
    hsv[..., 0] = (lo + hi) // 2
    hsv[..., 1] = np.maximum(hsv[..., 1], NEW_SATURATION)
    own = object_pixels(rgb, source_colour, extent)
    lift = MIN_VALUE_OF.get(target_colour, 0) / max(float(np.median(hsv[..., 2][own])) if own.any() else 255.0, 1.0)
    hsv[..., 2] *= max(1.0, lift)  # shading kept: every pixel lightened by one factor
    new = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip(weight * new + (1 - weight) * rgb, 0, 255).astype(np.uint8)


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
    """A pale, cold, bright day with snowflakes in the air."""
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float32)
    pale = 0.6 * rgb + 0.4 * grey  # colours bleached by the snow light
    cold = pale * np.array([0.88, 0.96, 1.08], np.float32) + 40
    flakes = _particles(np.clip(cold, 0, 255), seed, count=0.008, length=1, tint=255)
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
