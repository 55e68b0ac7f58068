"""ingest keeps the tool contract; unusable clips are bad input naming clip_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from models.cpu.flow import first_shot_window
from tests.contracts import Bench, Failure, ToolContract, ingest_input
from tools.ingest import Ingest, IngestConfig


class TestIngest(ToolContract):
    tool_name = "ingest"

    def good_input(self, bench: Bench) -> BaseModel:
        return ingest_input(bench.clip_file, bench.clip_file.parent)

    def failures(self, bench: Bench) -> list[Failure]:
        tool, folder = bench.tool("ingest"), bench.clip_file.parent
        text = folder / "notes.mp4"
        text.write_text("a text file named like a video")
        outside = folder / "outside.mp4"
        outside.symlink_to(bench.clip_file.parent.parent / "elsewhere.mp4")
        (bench.clip_file.parent.parent / "elsewhere.mp4").write_bytes(bench.clip_file.read_bytes())
        return [
            (tool, ingest_input(folder / "missing.mp4"), "bad_input", "clip_path"),
            (tool, ingest_input(text), "bad_input", "clip_path"),
            (tool, ingest_input(outside, folder), "bad_input", "clip_path"),
        ]

    def test_measures_the_clip_at_the_configured_size(self, bench: Bench) -> None:
        out = bench.run("ingest", self.good_input(bench))
        frames, fps = bench.io.read_video(out.clip)
        assert frames.shape == (out.num_frames, out.height, out.width, 3) and max(out.height, out.width) <= 64
        assert out.num_frames == 9 and fps == out.fps == 12 and 0 <= out.cut_score <= 1 and out.motion >= 0
        # Footage: contrast, neighbouring pixels that correlate, no flashing (blank, noise, flashing score low).
        assert out.contrast > 5 and 0.5 < out.neighbour_correlation <= 1 and 0 <= out.flash_rate < 0.5

    def test_a_shot_cut_near_the_start_moves_the_window_after_it(self, bench: Bench, clips: list[Path]) -> None:
        """bikes.mp4 cuts to another shot every 2-2.5 s, first 1.2 s in: a 2 s window starts after a cut, inside one
        shot, so the clip can make a sample."""
        bikes = next(c for c in clips if c.name == "bikes.mp4")
        tool = Ingest(IngestConfig(num_frames=25, fps=12, max_side=128))  # the cpu profile's 2 s window
        out = tool(ingest_input(bikes), bench.context())
        assert out.start_s > 1.0 and out.cut_score < 0.3 and out.num_frames == 25
        assert tool(self.good_input(bench), bench.context()).start_s == 0.0  # no cut: from the first frame


def test_the_first_stretch_without_a_cut_is_chosen() -> None:
    scores = np.array([0.1, 0.9, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.1])  # cuts after frames 1 and 4 (10 frames)
    assert first_shot_window(scores, 3, 0.55) == 2  # frames 2-4
    assert first_shot_window(scores, 4, 0.55) == 5  # frames 5-9
    assert first_shot_window(scores, 6, 0.55) == 0  # none long enough: the first frames, and the cut shows
    assert first_shot_window(np.zeros(3), 9, 0.55) == 0  # a clip shorter than the window
