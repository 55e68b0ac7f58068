"""Every neural backend, loaded with from_pretrained from a tiny checkpoint on disk, keeps its contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.tiny

from bench.bad_inputs import moving_frames  # noqa: E402
from models.checkpoints import CheckpointMissingError, resolve_checkpoint  # noqa: E402
from models.pool import ModelPool  # noqa: E402
from models.protocols import CaptionRequest, JudgeRequest  # noqa: E402
from models.registry import build_backend  # noqa: E402

CPU = {"device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_frames(9, 48, 64)


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool()


def backend(step: str, pool: ModelPool, **spec: object):  # type: ignore[no-untyped-def]
    return build_backend(step, {**CPU, **spec}, pool)


def test_depth_is_normalised_over_the_clip(clip: np.ndarray, pool: ModelPool) -> None:
    depth = backend("depth", pool, kind="depth_anything", path="tiny:depth_anything").estimate(clip)
    assert depth.shape == clip.shape[:3] and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == 1.0


def test_qwen_image_edit_returns_a_frame_of_the_input_size(clip: np.ndarray, pool: ModelPool) -> None:
    editor = backend("editor", pool, kind="qwen_image_edit", path="tiny:qwen_image_edit", steps=2, target_area=4096)
    out = editor.edit(clip[0], "make it a pencil sketch", seed=0)
    assert out.shape == clip[0].shape and out.dtype == np.uint8
    assert np.array_equal(out, editor.edit(clip[0], "make it a pencil sketch", seed=0))  # seeded


def test_flux_kontext_returns_a_frame_of_the_input_size(clip: np.ndarray, pool: ModelPool) -> None:
    editor = backend(
        "editor", pool, kind="flux_kontext", path="tiny:flux_kontext", steps=2, max_side=32, max_sequence_length=16
    )
    out = editor.edit(clip[0], "make it a watercolour", seed=0)
    assert out.shape == clip[0].shape and out.dtype == np.uint8


def test_wan_vace_propagates_to_the_source_frame_count(clip: np.ndarray, pool: ModelPool) -> None:
    prop = backend(
        "propagator", pool, kind="wan_vace", path="tiny:wan_vace", steps=2, height=32, width=32, num_frames=9
    )
    depth = np.linspace(0, 1, clip[..., 0].size, dtype=np.float32).reshape(clip.shape[:3])
    out = prop.propagate(clip, clip[0], 0, depth, "a rabbit drawn in pencil", seed=1)
    assert out.shape == clip.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match="depth"):
        prop.propagate(clip, clip[0], 0, None, "x", seed=1)


def test_wan_enhancer_keeps_shape(clip: np.ndarray, pool: ModelPool) -> None:
    enh = backend("enhancer", pool, kind="wan_v2v", path="tiny:wan_v2v", steps=4, strength=0.5, height=32, width=32)
    out = enh.enhance(clip, clip, "", seed=0)
    assert out.shape == clip.shape and out.dtype == np.uint8


def test_qwen_vl_roles_share_one_model_and_answer_text(clip: np.ndarray, pool: ModelPool) -> None:
    spec = {"kind": "qwen2_5_vl", "path": "tiny:qwen2_5_vl", "max_new_tokens": 8}
    captioner = backend("captioner", pool, **spec)
    judge = backend("video_judge", pool, **spec)
    assert captioner.loaded is judge.loaded
    assert isinstance(captioner.caption(CaptionRequest(clip, 8.0, "Describe the video.")), str)
    assert isinstance(backend("keyframe_judge", pool, **spec).judge(JudgeRequest(clip[0], clip[0], "Score.", "x")), str)


def test_missing_checkpoint_names_step_and_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointMissingError, match=r"backends.propagator.path: no checkpoint at /nowhere/wan"):
        resolve_checkpoint("propagator", "/nowhere/wan", allow_download=False)
    with pytest.raises(CheckpointMissingError, match="--allow-download"):
        resolve_checkpoint("editor", "Qwen/Qwen-Image-Edit", allow_download=False)
    assert resolve_checkpoint("editor", "Qwen/Qwen-Image-Edit", allow_download=True) == "Qwen/Qwen-Image-Edit"
    assert resolve_checkpoint("editor", str(tmp_path), allow_download=False) == str(tmp_path)
