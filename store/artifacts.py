"""Content-addressed artifacts: every file is named by the sha256 of its bytes and written atomically
(temp file, fsync, rename), so a killed run never leaves a half-written file under a real name. Files are
read-only once written, and every read checks the bytes against the name: a file changed since (truncated,
edited) stops the run with the command that says what to do, never feeds a tool or the dataset."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.engine import Engine

from store.file_modes import READ_ONLY_MODE, mkstemp
from store.inserts import insert_ignore
from store.tables import Artifact
from store.video_io import DecodedClip, decode_clip, encode_video, read_video

HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactChanged(OSError):
    """An artifact whose bytes no longer match its name. An I/O error (EIO): the store's fault, never the
    tool's, so the run stops resumably instead of discarding an episode for it."""

    def __init__(self, path: Path, out: Path) -> None:
        super().__init__(
            errno.EIO,
            f"{path} no longer holds the bytes it was written with (changed or truncated since): "
            f"python main.py verify --out {out} says what to do",
        )
        self.path, self.out = path, out

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[type, tuple[Path, Path]]:
        return ArtifactChanged, (self.path, self.out)  # rebuilt from its fields when it comes back from Ray


class ArtifactStore:
    """Files under root/artifacts, one row per file in the Artifact table. Refs are '<sha256><suffix>'."""

    def __init__(self, root: Path, engine: Engine) -> None:
        self.root = Path(root) / "artifacts"
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = engine

    def path(self, ref: str) -> Path:
        if not ref or "/" in ref or ref.startswith("."):
            raise ValueError(f"not an artifact ref: {ref!r}")
        return self.root / ref[:2] / ref

    def exists(self, ref: str) -> bool:
        """Whether the artifact is there with the bytes of its name (a changed one counts as absent)."""
        path = self.path(ref)
        return path.is_file() and sha256_file(path) == ref.split(".")[0]

    def verified_path(self, ref: str) -> Path:
        """The artifact's path, once its bytes are checked against its name; raises FileNotFoundError when it
        is gone, ArtifactChanged when it changed."""
        path = self.path(ref)
        if sha256_file(path) != ref.split(".")[0]:
            raise ArtifactChanged(path, self.root.parent)
        return path

    def restore(self, ref: str, copy: Path) -> None:
        """Put an artifact back under its name from an intact copy of it (a dataset file)."""
        tmp = self._tmp(Path(ref).suffix)
        try:
            shutil.copyfile(copy, tmp)
            if (restored := self._commit_file(tmp, Path(ref).suffix, "restored")) != ref:
                raise ValueError(f"{copy} does not hold the bytes of {ref} (it holds {restored})")
        finally:
            tmp.unlink(missing_ok=True)

    def _commit_file(self, tmp: Path, suffix: str, kind: str) -> str:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        ref = sha256_file(tmp) + suffix
        dest = self.path(ref)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, READ_ONLY_MODE)  # a file named by its bytes must keep them
        os.replace(tmp, dest)
        relpath = str(dest.relative_to(self.root))
        insert_ignore(self.engine, Artifact, id=ref, kind=kind, relpath=relpath, bytes=dest.stat().st_size)
        return ref

    def _tmp(self, suffix: str) -> Path:
        fd, name = mkstemp(suffix=suffix, dir=str(self.root), prefix=".tmp-")
        os.close(fd)
        return Path(name)

    @contextmanager
    def scratch_dir(self) -> Iterator[Path]:
        """A temporary folder on the store's disk, so finished files move in by rename, not copy."""
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".tmp-") as name:
            yield Path(name)

    def adopt_file(self, path: Path, kind: str) -> str:
        """Move a finished file (e.g. a checkpoint written in scratch_dir) into the store."""
        return self._commit_file(path, path.suffix, kind)

    def write_video(self, frames: np.ndarray, fps: float, kind: str = "video") -> str:
        tmp = self._tmp(".mp4")
        try:
            encode_video(frames, fps, tmp)
            return self._commit_file(tmp, ".mp4", kind)
        finally:
            tmp.unlink(missing_ok=True)

    def read_video(self, ref: str) -> tuple[np.ndarray, float]:
        return read_video(self.verified_path(ref))

    def write_image(self, rgb: np.ndarray, kind: str = "image") -> str:
        tmp = self._tmp(".png")
        try:
            ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError(f"could not encode an image of shape {rgb.shape}")
            tmp.write_bytes(data.tobytes())
            return self._commit_file(tmp, ".png", kind)
        finally:
            tmp.unlink(missing_ok=True)

    def read_image(self, ref: str) -> np.ndarray:
        bgr = cv2.imread(str(self.verified_path(ref)), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"artifact {ref} is missing or unreadable at {self.path(ref)}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def write_array(self, array: np.ndarray, kind: str = "array") -> str:
        """Float data such as depth, kept exact (npy) rather than quantised into a video."""
        tmp = self._tmp(".npy")
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
            return self._commit_file(tmp, ".npy", kind)
        finally:
            tmp.unlink(missing_ok=True)

    def read_array(self, ref: str) -> np.ndarray:
        return np.load(self.verified_path(ref), allow_pickle=False)

    def decode_source(
        self, source: Path, fps: float, num_frames: int, max_side: int, max_source_pixels: int
    ) -> DecodedClip:
        """A user's clip, read in place (never copied whole: only the trimmed clip is kept)."""
        return decode_clip(source, fps, num_frames, max_side, max_source_pixels)
