"""Every neural backend, loaded with from_pretrained from a tiny checkpoint on disk, keeps its contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.tiny

from safetensors.torch import save_file  # noqa: E402

from bench.bad_inputs import moving_frames  # noqa: E402
from models.pool import ModelPool  # noqa: E402
from models.protocols import CaptionRequest, JudgeRequest  # noqa: E402
from models.registry import backend_id, build_backend  # noqa: E402
from prompts.loader import PromptBook  # noqa: E402
from store.artifacts import ArtifactStore  # noqa: E402
from store.engine import open_engine  # noqa: E402
from tests.contracts import set_up_on  # noqa: E402
from tools.base import ToolContext  # noqa: E402
from tools.enhance_temporal import EnhanceTemporal, EnhanceTemporalInput  # noqa: E402
from tools.propagate import Propagate, PropagateInput  # noqa: E402

CPU = {"device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_frames(9, 48, 64)


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool()


def backend(step: str, pool: ModelPool, **spec: object):  # type: ignore[no-untyped-def]
    built = build_backend(step, {**CPU, **spec}, pool)
    assert built.spec_id == backend_id(step, {**CPU, **spec})  # what the tool declares from config, unloaded
    return built


def test_depth_is_normalised_over_the_clip(clip: np.ndarray, pool: ModelPool) -> None:
    depth = backend("depth", pool, kind="depth_anything", path="tiny:depth_anything").estimate(clip)
    assert depth.shape == clip.shape[:3] and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == 1.0


def test_qwen_image_edit_returns_a_frame_of_the_input_size(clip: np.ndarray, pool: ModelPool) -> None:
    editor = backend("editor", pool, kind="qwen_image_edit", path="tiny:qwen_image_edit", steps=2, target_area=4096)
    out = editor.edit(clip[0], "make it a pencil sketch", seed=0)
    assert out.shape == clip[0].shape and out.dtype == np.uint8
    assert np.array_equal(out, editor.edit(clip[0], "make it a pencil sketch", seed=0))  # seeded


def test_qwen_image_edit_works_at_its_target_area_halved_per_memory_level(clip: np.ndarray, pool: ModelPool) -> None:
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as qwen_edit

    module_function = qwen_edit.calculate_dimensions
    editor = backend("editor", pool, kind="qwen_image_edit", path="tiny:qwen_image_edit", steps=1, target_area=4096)
    encoded: list[tuple[int, int]] = []  # the condition image as the VAE sees it
    hook = editor.pipe.vae.encoder.register_forward_pre_hook(lambda _m, args: encoded.append(args[0].shape[-2:]))
    try:
        editor.edit(clip[0], "make it a pencil sketch", seed=0)  # 64x48 at ~4096 pixels
        editor.edit(clip[0], "make it a pencil sketch", seed=0, memory_level=1)  # ~2048 pixels
    finally:
        hook.remove()
    assert [tuple(s) for s in encoded] == [(64, 64), (32, 64)]
    assert qwen_edit.calculate_dimensions is module_function  # the module is left as it was


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


def test_wan_at_a_lower_memory_level_makes_a_shorter_clip_of_the_sources_own_frames(
    clip: np.ndarray, pool: ModelPool, tmp_path: Path
) -> None:
    """Half the frames per level as a window around the key frame, at the clip's rate; the window of the source
    and of its depth video come with the video, so no frame is stretched or repeated to fill the clip."""
    ctx = ToolContext(io=ArtifactStore(tmp_path, open_engine(f"sqlite:///{tmp_path}/db.sqlite")), prompts=PromptBook())
    wan = dict(path="tiny:wan_vace", steps=2, height=32, width=32)
    propagate = set_up_on(Propagate(), backend("propagator", pool, kind="wan_vace", num_frames=9, **wan))
    enhance = set_up_on(
        EnhanceTemporal(),
        backend("enhancer", pool, kind="wan_v2v", path="tiny:wan_v2v", steps=4, strength=0.5, height=32, width=32),
    )
    depth = np.linspace(0, 1, clip[..., 0].size, dtype=np.float32).reshape(clip.shape[:3])
    depth_video = ctx.io.write_video((depth[..., None].repeat(3, -1) * 255).astype(np.uint8), 8.0)
    inp = PropagateInput(
        clip=ctx.io.write_video(clip, 8.0),
        edited_keyframe=ctx.io.write_image(clip[4]),
        keyframe_index=4,
        depth=ctx.io.write_array(depth),
        prompt="a rabbit drawn in pencil",
        seed=1,
        control_strength=1.0,
        depth_video=depth_video,
    )
    source, _ = ctx.io.read_video(inp.clip)
    lowered = propagate(inp.model_copy(update={"memory_level": 1}), ctx)
    made = lowered.made_for
    assert (made.start, made.frames, made.of, made.keyframe_index) == (2, 5, 9, 2)  # 4k+1 frames, key frame centred
    window, edited = ctx.io.read_video(made.clip)[0], ctx.io.read_video(lowered.edited_video)[0]
    assert edited.shape == window.shape == (5, 48, 64, 3) and len(ctx.io.read_video(made.depth_video)[0]) == 5
    assert np.abs(window.astype(int) - source[2:7]).mean() < 2  # the source's own frames 2-6, in order

    enhanced = enhance(  # the source stands in for a generated video: the enhancer takes any frames
        EnhanceTemporalInput(video=inp.clip, clip=inp.clip, seed=0, memory_level=1, keyframe_index=4), ctx
    )
    assert (enhanced.made_for.start, enhanced.made_for.frames) == (2, 5)
    assert ctx.io.read_video(enhanced.enhanced_video)[0].shape == (5, 48, 64, 3)

    shorter = backend("propagator", pool, kind="wan_vace", num_frames=5, **wan)
    assert [shorter.frames_made(n) for n in (9, 8, 5)] == [5, 5, 5]  # at most its num_frames, 4k+1
    with pytest.raises(ValueError, match="4k\\+1 frames, at most 5: 9 asked for"):
        shorter.propagate(clip, clip[0], 0, depth, "x", seed=1)


def test_qwen_vl_roles_share_one_model_and_answer_text(clip: np.ndarray, pool: ModelPool) -> None:
    spec = {"kind": "qwen2_5_vl", "path": "tiny:qwen2_5_vl", "max_new_tokens": 8}
    captioner = backend("captioner", pool, **spec)
    judge = backend("video_judge", pool, **spec)
    planner = backend("planner", pool, **spec)
    assert captioner.loaded is judge.loaded is planner.loaded  # one copy of the weights for every role
    caption = captioner.caption(CaptionRequest(clip, 8.0, "Describe the video."))
    verdict = backend("keyframe_judge", pool, **spec).judge(JudgeRequest(clip[0], clip[0], "Score.", "x"))
    for reply in (caption, verdict):
        assert isinstance(reply.text, str) and reply.usage["completion_tokens"] <= 8 < reply.usage["prompt_tokens"]


LORA_RANK = 2


def write_distill_lora(path: Path, transformer, keys: str) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """A LoRA on every block's self-attention q and v, saved as Wan LoRAs are: `diffusers` names
    (transformer.blocks.N.attn1.to_q.lora_A/B) or the original Wan names that CausVid ships
    (diffusion_model.blocks.N.self_attn.q.lora_down/up). Returns the expected weight change per linear."""
    generator = torch.Generator().manual_seed(0)
    tensors, deltas = {}, {}
    for i in range(len(transformer.blocks)):
        for ours, theirs in (("to_q", "q"), ("to_v", "v")):
            linear = transformer.blocks[i].attn1.get_submodule(ours)
            down = torch.randn(LORA_RANK, linear.in_features, generator=generator)
            up = torch.randn(linear.out_features, LORA_RANK, generator=generator)
            deltas[f"blocks.{i}.attn1.{ours}.weight"] = up @ down
            if keys == "diffusers":
                stem = f"transformer.blocks.{i}.attn1.{ours}"
                tensors |= {f"{stem}.lora_A.weight": down, f"{stem}.lora_B.weight": up}
            else:
                stem = f"diffusion_model.blocks.{i}.self_attn.{theirs}"
                tensors |= {f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up}
                tensors[f"{stem}.alpha"] = torch.tensor(float(LORA_RANK))  # alpha = rank: scale 1
    save_file(tensors, path)
    return deltas


@pytest.mark.parametrize("keys", ["diffusers", "wan"])
def test_wan_vace_fuses_a_distillation_lora(keys: str, clip: np.ndarray, pool: ModelPool, tmp_path: Path) -> None:
    spec = {"kind": "wan_vace", "path": "tiny:wan_vace", "steps": 2, "height": 32, "width": 32, "num_frames": 9}
    plain = backend("propagator", pool, **spec)
    lora = tmp_path / "causvid_tiny.safetensors"
    deltas = write_distill_lora(lora, plain.pipe.transformer, keys)
    fused = backend("propagator", pool, **spec, lora_path=str(lora))
    base, tuned = plain.pipe.transformer.state_dict(), fused.pipe.transformer.state_dict()
    assert not any("lora" in name for name in tuned)  # fused into the weights, adapters unloaded
    for name, delta in deltas.items():
        assert torch.allclose(tuned[name] - base[name], delta, atol=1e-4), name
    assert "+lora:causvid_tiny.safetensors" in fused.spec_id  # a fused model is another backend in the cache key
    depth = np.linspace(0, 1, clip[..., 0].size, dtype=np.float32).reshape(clip.shape[:3])
    args = (clip, clip[0], 0, depth, "a rabbit drawn in pencil")
    assert not np.array_equal(plain.propagate(*args, seed=1), fused.propagate(*args, seed=1))
