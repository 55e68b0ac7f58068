"""ingest keeps the tool contract; unusable clips are bad input naming clip_path."""

from __future__ import annotations

from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract, ingest_input


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
