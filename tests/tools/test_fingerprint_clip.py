"""fingerprint_clip keeps the tool contract; a clip that cannot be decoded is bad input naming clip_path."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract
from tools.ingest import FingerprintClipInput


def fingerprint_input(path: Path) -> FingerprintClipInput:
    st = path.stat() if path.exists() else None
    return FingerprintClipInput(
        clip_path=str(path), clip_size=st.st_size if st else -1, clip_mtime_ns=st.st_mtime_ns if st else -1
    )


class TestFingerprintClip(ToolContract):
    tool_name = "fingerprint_clip"

    def good_input(self, bench: Bench) -> BaseModel:
        return fingerprint_input(bench.clip_file)

    def failures(self, bench: Bench) -> list[Failure]:
        tool, text = bench.tool("fingerprint_clip"), bench.clip_file.parent / "notes.mp4"
        text.write_text("a text file named like a video")
        return [
            (tool, fingerprint_input(bench.clip_file.parent / "missing.mp4"), "bad_input", "clip_path"),
            (tool, fingerprint_input(text), "bad_input", "clip_path"),
        ]

    def test_hashes_each_sampled_frame_in_64_bits(self, bench: Bench) -> None:
        out = bench.run("fingerprint_clip", self.good_input(bench))
        assert out.frame_hashes and all(len(h) == 16 and int(h, 16) >= 0 for h in out.frame_hashes)
