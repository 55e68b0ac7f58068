"""The VAE work the Wan stages no longer repeat, on the tiny models: VACE's blank half of a full mask encoded once
per shape, and the enhancer started from the propagation's latents instead of an encode of its decoded video."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.tiny

from diffusers import WanVACEPipeline  # noqa: E402
from diffusers.pipelines.wan.pipeline_wan_video2video import retrieve_latents  # noqa: E402

from bench.bad_inputs import moving_frames  # noqa: E402
from models.frames import resize, to_pil  # noqa: E402
from models.pool import ModelPool  # noqa: E402
from models.registry import build_backend  # noqa: E402
from models.wan_enhance import enhance_latents, enhance_video  # noqa: E402
from models.wan_vace import depth_control, generate_video  # noqa: E402
from prompts.loader import PromptBook  # noqa: E402
from store.artifacts import ArtifactStore  # noqa: E402
from store.engine import open_engine  # noqa: E402
from tests.contracts import set_up_on  # noqa: E402
from tools.base import ToolContext  # noqa: E402
from tools.enhance_temporal import EnhanceTemporal, EnhanceTemporalInput  # noqa: E402
from tools.propagate import Propagate, PropagateInput  # noqa: E402
from tools.video_latents import taken  # noqa: E402

CPU = {"device": "cpu", "dtype": "float32"}
SIZE = {"height": 32, "width": 32}
PROPAGATOR = {**CPU, **SIZE, "kind": "wan_vace", "path": "tiny:wan_vace", "steps": 2, "num_frames": 9}
ENHANCER = {**CPU, **SIZE, "kind": "wan_v2v", "path": "tiny:wan_v2v", "steps": 4, "strength": 0.5}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_frames(9, 48, 64)


@pytest.fixture(scope="module")
def depth(clip: np.ndarray) -> np.ndarray:
    return np.linspace(0, 1, clip[..., 0].size, dtype=np.float32).reshape(clip.shape[:3])


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool()


def encodes(pipe, work) -> int:  # type: ignore[no-untyped-def]
    """VAE encodes `work` runs: the quant conv closes each one."""
    calls: list[int] = []
    hook = pipe.vae.quant_conv.register_forward_hook(lambda *_: calls.append(1))
    try:
        work()
    finally:
        hook.remove()
    return len(calls)


def test_the_blank_half_of_a_full_mask_is_encoded_once_per_shape_and_the_video_is_upstreams(
    clip: np.ndarray, depth: np.ndarray, pool: ModelPool
) -> None:
    prop = build_backend("propagator", PROPAGATOR, pool)
    control, reference = resize(depth_control(depth, 1.0), 32, 32), resize(clip[:1], 32, 32)[0]
    args = (control, reference, "a rabbit", "", 2, prop.guidance_scale, 1)
    made: dict[str, tuple] = {}
    prop.pipe.__dict__.pop("blank_latents", None)  # another test's calls may have filled it
    # first call: the blank half, the control video, the reference frame; then the blank half is cached
    assert encodes(prop.pipe, lambda: made.setdefault("first", generate_video(prop.pipe, *args))) == 3
    assert encodes(prop.pipe, lambda: made.setdefault("cached", generate_video(prop.pipe, *args))) == 2
    upstream = WanVACEPipeline(**prop.pipe.components)  # the same weights, diffusers' own method
    assert encodes(upstream, lambda: made.setdefault("upstream", generate_video(upstream, *args))) == 3
    for name in ("first", "cached"):
        assert np.array_equal(made[name][0], made["upstream"][0]) and torch.equal(made[name][1], made["upstream"][1])
    # a tiled VAE (memory level 1) encodes its own blank half: tiles may round differently
    tiled = prop.propagate_latents(clip, clip[0], 0, depth, "a rabbit", seed=1, memory_level=1)
    assert len(prop.pipe.blank_latents) == 2 and tiled[0].shape == clip.shape


def test_the_enhancer_started_from_the_videos_own_latents_is_the_enhancer_of_the_video(
    clip: np.ndarray, pool: ModelPool
) -> None:
    """The hand-off re-noises as the pipeline does: handed the latents the pipeline would encode, the same video."""
    pipe = build_backend("enhancer", ENHANCER, pool).pipe
    frames = resize(clip, 32, 32)
    video = pipe.video_processor.preprocess_video(to_pil(frames), height=32, width=32)
    config = pipe.vae.config
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
    with torch.inference_mode():
        latents = retrieve_latents(pipe.vae.encode(video.to(pipe.vae.dtype)), sample_mode="argmax").float()
    latents = (latents - mean) * (1.0 / torch.tensor(config.latents_std).view(1, -1, 1, 1, 1))  # as diffusers does
    from_video = enhance_video(pipe, frames, "", 4, 0.5, 1.0, seed=3)
    assert np.array_equal(enhance_latents(pipe, latents, "", 4, 0.5, 1.0, seed=3), from_video)


@pytest.fixture(scope="module")
def propagated(clip: np.ndarray, depth: np.ndarray, pool: ModelPool, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A propagation by the tool, with its context: the edited video and its latents in the store."""
    root = tmp_path_factory.mktemp("store")
    ctx = ToolContext(io=ArtifactStore(root, open_engine(f"sqlite:///{root}/db.sqlite")), prompts=PromptBook())
    source = ctx.io.write_video(clip, 8.0)
    inp = PropagateInput(
        clip=source,
        edited_keyframe=ctx.io.write_image(clip[0]),
        keyframe_index=0,
        depth=ctx.io.write_array(depth),
        prompt="a rabbit",
        seed=1,
        control_strength=1.0,
    )
    return ctx, source, set_up_on(Propagate(), build_backend("propagator", PROPAGATOR, pool))(inp, ctx)


def test_the_enhancer_from_the_propagations_latents_is_within_two_levels_of_the_one_from_its_video(
    clip: np.ndarray,
    propagated,
    pool: ModelPool,  # type: ignore[no-untyped-def]
) -> None:
    """They differ by what the round trip the hand-off skips loses: the decode, 8-bit frames, the resize to the
    source's size, the video file, the resize back and the encode (and float16 latents, 11 bits where the
    transformer reads 8). Measured on the tiny model: 0.6 levels of 255 apart on average, 99% within 7, so the
    bounds are 2 and 12. The tiny VAE has random weights and is no autoencoder (its round trip changes the latents
    by their own size), so this bounds the plumbing, not the real VAE's loss, which needs the real weights on a
    GPU."""
    ctx, _, made = propagated
    latents = taken(ctx, made.latents)
    enhancer = build_backend("enhancer", ENHANCER, pool)
    assert enhancer.latents_refused(latents) is None
    from_video = enhancer.enhance(ctx.io.read_video(made.edited_video)[0], clip, "", seed=0).astype(int)
    handed = enhancer.enhance_latents(latents, *clip.shape[1:3], "", seed=0)
    assert handed.shape == clip.shape and handed.dtype == np.uint8
    apart = np.abs(handed.astype(int) - from_video)
    assert 0 < apart.mean() < 2 and np.percentile(apart, 99) <= 12


def test_the_enhance_tool_starts_from_the_handed_latents_where_they_fit_and_says_why_not_elsewhere(
    propagated,
    pool: ModelPool,  # type: ignore[no-untyped-def]
) -> None:
    ctx, source, made = propagated
    handed = made.latents
    assert handed is not None and handed.video == made.edited_video
    assert ctx.io.read_array(handed.latents).shape == (16, 3, 4, 4) and (handed.height, handed.frames) == (32, 9)
    enhance = set_up_on(EnhanceTemporal(), build_backend("enhancer", ENHANCER, pool))
    inp = EnhanceTemporalInput(video=made.edited_video, clip=source, seed=0, latents=handed)
    ctx.usage.clear()
    out = enhance(inp, ctx)
    assert ctx.usage["started_from"] == "the propagation's latents"
    assert ctx.io.read_video(out.enhanced_video)[0].shape == ctx.io.read_video(made.edited_video)[0].shape
    # where it encodes the video instead, and why (the enhancer runs as before: tests/models/test_tiny_backends.py)
    other_space = handed.model_copy(update={"space": {**handed.space, "z_dim": 48}})
    refusals = {
        "no latents handed (a propagator without them, or its call made before they were)": ({"latents": None}, 9),
        "the propagator's VAE has another latent space (z_dim differ)": ({"latents": other_space}, 9),
        "the latents are of another video": ({"video": source}, 9),
        "frames 2-6 enhanced, the latents are of all 9": ({}, 5),  # a lower memory level's window
        "they are of a 64x32 video, the enhancer works at 32x32": (
            {"latents": handed.model_copy(update={"width": 64})},
            9,
        ),
    }
    for why, (update, frames) in refusals.items():
        start = (9 - frames) // 2
        assert enhance.handed_latents(inp.model_copy(update=update), ctx, start, frames) == (None, why)
