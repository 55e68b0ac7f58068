"""The cpu profile's key-frame editor, OpenCV/NumPy: whole-frame styles and colour grades here, weather,
recolouring one object and subtitles in scene_edits.py. What to do is parsed from the instruction's
words, so an LLM planner's free wording reaches the same operator."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from models.cpu import scene_edits

Style = Callable[[np.ndarray], np.ndarray]


def pencil_sketch(rgb: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    blur = cv2.GaussianBlur(255 - g, (0, 0), sigmaX=max(1.0, rgb.shape[1] / 120))
    sketch = cv2.divide(g, 255 - blur, scale=256)
    return cv2.cvtColor(sketch, cv2.COLOR_GRAY2RGB)


def cartoon(rgb: np.ndarray) -> np.ndarray:
    smooth = rgb
    for _ in range(2):
        smooth = cv2.bilateralFilter(smooth, 7, 60, 7)
    levels = 6
    flat = (np.round(smooth.astype(np.float32) / 255 * (levels - 1)) * (255 / (levels - 1))).astype(np.uint8)
    g = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 5)
    edges = cv2.adaptiveThreshold(g, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return cv2.bitwise_and(flat, flat, mask=edges)


def oil_paint(rgb: np.ndarray) -> np.ndarray:
    return cv2.stylization(rgb, sigma_s=40, sigma_r=0.35)


def watercolor(rgb: np.ndarray) -> np.ndarray:
    """Flat washes of lighter, livelier colour on paper, with the shapes' edges drawn in darker pigment."""
    soft = cv2.edgePreservingFilter(rgb, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.45)
    hsv = cv2.cvtColor(soft, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= 1.3
    washed = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    washed = 0.7 * washed + 0.3 * 250  # pigment thinned on white paper
    g = cv2.cvtColor(soft, cv2.COLOR_RGB2GRAY).astype(np.float32)
    edges = np.clip(np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)) / 160, 0, 0.5)
    return np.clip(washed * (1 - edges[..., None]), 0, 255).astype(np.uint8)


def sepia(rgb: np.ndarray) -> np.ndarray:
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    return np.clip(rgb.astype(np.float32) @ m.T, 0, 255).astype(np.uint8)


def black_and_white(rgb: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    g = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(g)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)


def night(rgb: np.ndarray) -> np.ndarray:
    x = (rgb.astype(np.float32) / 255) ** 1.8 * 0.55
    x = x * np.array([0.65, 0.8, 1.25], np.float32)
    return np.clip(x * 255, 0, 255).astype(np.uint8)


def _grade(rgb: np.ndarray, gains: tuple[float, float, float], lift: tuple[float, float, float]) -> np.ndarray:
    x = rgb.astype(np.float32) * np.array(gains, np.float32) + np.array(lift, np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


# The grades are strong enough to see at a glance: issue 27 found warm grades of a mean CIELAB change of about
# 10 (gains 1.18, 1.02, 0.78) barely visible on clips already warm.
def warm_grade(rgb: np.ndarray) -> np.ndarray:
    return _grade(rgb, (1.28, 1.05, 0.68), (20, 8, -12))


def cool_grade(rgb: np.ndarray) -> np.ndarray:
    return _grade(rgb, (0.72, 0.98, 1.3), (-12, 6, 24))


def pixel_art(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    block = max(2, max(h, w) // 48)
    small = cv2.resize(rgb, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    levels = 4
    small = (np.round(small.astype(np.float32) / 255 * (levels - 1)) * (255 / (levels - 1))).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@dataclass(frozen=True)
class StyleSpec:
    apply: Style
    keywords: tuple[str, ...]  # regular expressions matched against the lower-cased instruction
    category: str = "global_style"


STYLES: dict[str, StyleSpec] = {
    "pencil_sketch": StyleSpec(pencil_sketch, (r"pencil", r"sketch", r"graphite", r"drawing")),
    "cartoon": StyleSpec(cartoon, (r"cartoon", r"comic", r"anime", r"cel[- ]shad")),
    "oil_paint": StyleSpec(oil_paint, (r"oil", r"impressionis", r"brush ?strokes?")),
    "watercolor": StyleSpec(watercolor, (r"water ?colou?r",)),
    "sepia": StyleSpec(sepia, (r"sepia", r"antique", r"old photo")),
    "black_and_white": StyleSpec(
        black_and_white,
        (r"black and white", r"black-and-white", r"monochrome", r"greyscale", r"grayscale", r"remove all colou?r"),
    ),
    "night": StyleSpec(night, (r"night", r"moon", r"dark evening"), "global_freeform"),
    "warm_grade": StyleSpec(warm_grade, (r"warm", r"golden", r"sunset", r"orange tint")),
    "cool_grade": StyleSpec(cool_grade, (r"cold", r"cool", r"wint", r"teal", r"blue (tint|grade)")),
    "pixel_art": StyleSpec(pixel_art, (r"pixel", r"8-bit", r"retro (video )?game", r"blocky")),
}


def parse_style(instruction: str) -> str | None:
    """The first style whose keyword the instruction mentions (in STYLES order), or None."""
    text = instruction.lower()
    for name, spec in STYLES.items():
        if any(re.search(k, text) for k in spec.keywords):
            return name
    return None


# The edit categories the cpu editor makes (agent/profiles/categories.yaml names them all).
CPU_CATEGORIES = frozenset({"global_style", "global_freeform", "local_attribute", "text"})


@dataclass(frozen=True)
class PlannedEdit:
    """What an instruction asks of the cpu editor: which operator, with what. Two instructions with the same
    `effect` make the same edit, however they are worded."""

    kind: str  # subtitle | recolour | weather | style
    args: tuple[str, ...]  # (text, band) | (colour, new colour) | (weather,) | (style,)

    @property
    def effect(self) -> str:
        return ":".join((self.kind, *(a.casefold() for a in self.args)))

    def apply(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The edited image; ValueError when the frame has nothing to apply it to (no object of that colour)."""
        if self.kind == "subtitle":
            return scene_edits.subtitle(image, *self.args)
        if self.kind == "recolour":
            return scene_edits.recolour(image, *self.args)
        if self.kind == "weather":
            return scene_edits.WEATHER[self.args[0]][0](image, seed)
        return STYLES[self.args[0]].apply(image)


def parse_edit(instruction: str) -> PlannedEdit | None:
    """The cpu editor's reading of an instruction, or None when it names no edit the editor makes. Specific
    requests first: 'make the red car blue' names colours a grade's keywords would also catch."""
    if subtitle := scene_edits.parse_subtitle(instruction):
        return PlannedEdit("subtitle", subtitle)
    if colours := scene_edits.parse_recolour(instruction):
        return PlannedEdit("recolour", colours)
    if weather := scene_edits.parse_weather(instruction):
        return PlannedEdit("weather", (weather,))
    if style := parse_style(instruction):
        return PlannedEdit("style", (style,))
    return None


def instruction_effect(instruction: str) -> str | None:
    """The edit an instruction makes on the cpu editor ('style:warm_grade', 'recolour:blue:yellow'), or None."""
    planned = parse_edit(instruction)
    return planned.effect if planned else None


class StyleEditor:
    """ImageEditor for the cpu profile. The seed places weather particles; everything else is deterministic."""

    # v4: a recolour covers the whole object (every stripe of a striped seat, none of its white), and a field's
    # patch is no object; the grades, watercolour and snow are strong enough to see
    spec_id = "cpu-opencv-styles-v4"
    categories = CPU_CATEGORIES
    effect = staticmethod(instruction_effect)

    def edit(self, image: np.ndarray, instruction: str, seed: int, memory_level: int = 0) -> np.ndarray:
        del memory_level  # a CPU filter has nothing to save
        planned = parse_edit(instruction)
        if planned is None:
            raise UnsupportedEditError(
                f"the cpu editor does these edits: {', '.join([*STYLES, *scene_edits.WEATHER])}, recolouring one "
                f"object ('make the red object blue') and subtitles ('add the subtitle \"...\"'); none is named in "
                f"{instruction!r}"
            )
        try:
            return planned.apply(image, seed)
        except ValueError as err:
            raise UnsupportedEditError(f"{instruction!r}: {err}") from err


class UnsupportedEditError(ValueError):
    """The instruction asks for an edit this backend cannot make."""
