"""What the fast preset does to a denoiser, on the real classes at tiny size: distillation LoRAs in the namings
they ship in (loaded by diffusers' own converters and fused), CFG-free sampling at one transformer pass per
step, the attention backend through diffusers' dispatcher, and FP8 where the device has it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.tiny

from safetensors.torch import save_file  # noqa: E402

from bench.bad_inputs import moving_frames  # noqa: E402
from models.pipelines import fp8_linears, fp8_unsupported  # noqa: E402
from models.pool import ModelPool  # noqa: E402
from models.registry import BackendConfigError, build_backend  # noqa: E402

CPU = {"device": "cpu", "dtype": "float32"}
WAN = {"path": "tiny:wan_vace", "height": 32, "width": 32, "num_frames": 9}
RANK = 2


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_frames(9, 48, 64)


def backend(step: str, **spec: object):  # type: ignore[no-untyped-def]
    return build_backend(step, {**CPU, **spec}, ModelPool())


def transformer_passes(pipe, work) -> int:  # type: ignore[no-untyped-def]
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda *_: calls.append(1))
    try:
        work()
    finally:
        hook.remove()
    return len(calls)


def low_rank(linear: torch.nn.Linear, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(RANK, linear.in_features, generator=generator), torch.randn(
        linear.out_features, RANK, generator=generator
    )


# Wan's original module names (what lightx2v's and Kijai's LoRA files use) -> diffusers' names.
WAN_NAMES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.k": "attn2.to_k",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}


def write_lightx2v_lora(path: Path, transformer) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """A step-and-CFG-distillation LoRA as lightx2v's Wan2.1 LoRAs ship (Kijai's extraction): Wan's original
    names under `diffusion_model.`, lora_down/lora_up without alpha, a bias delta `diff_b` per linear, and
    zeroed norm deltas `.diff`. Returns the expected change of every weight and bias."""
    generator = torch.Generator().manual_seed(0)
    tensors, deltas = {}, {}
    for i, block in enumerate(transformer.blocks):
        for theirs, ours in WAN_NAMES.items():
            linear = block.get_submodule(ours)
            down, up = low_rank(linear, generator)
            bias = torch.randn(linear.out_features, generator=generator)
            stem = f"diffusion_model.blocks.{i}.{theirs}"
            tensors |= {f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up, f"{stem}.diff_b": bias}
            deltas |= {f"blocks.{i}.{ours}.weight": up @ down, f"blocks.{i}.{ours}.bias": bias}
        tensors[f"diffusion_model.blocks.{i}.norm3.diff"] = torch.zeros(block.attn1.to_q.in_features)
    save_file(tensors, path)
    return deltas


def assert_fused(plain, fused, deltas: dict[str, torch.Tensor]) -> None:  # type: ignore[no-untyped-def]
    base, tuned = plain.pipe.transformer.state_dict(), fused.pipe.transformer.state_dict()
    assert not any("lora" in name for name in tuned)  # fused into the weights, adapters unloaded
    for name, delta in deltas.items():
        assert torch.allclose(tuned[name] - base[name], delta, atol=1e-4), name
    changed = {name for name in base if not torch.equal(base[name], tuned[name])}
    assert changed == set(deltas)  # nothing else moved (VACE's own blocks, embedders, norms)


@pytest.mark.parametrize("step, spec", [("propagator", {"kind": "wan_vace", **WAN}), ("enhancer", {})])
def test_a_lightx2v_lora_in_wans_own_names_fuses_into_the_blocks(step: str, spec: dict, tmp_path: Path) -> None:
    spec = spec or {"kind": "wan_v2v", "path": "tiny:wan_v2v", "steps": 4, "strength": 0.5, "height": 32, "width": 32}
    plain = backend(step, **spec)
    lora = tmp_path / "lightx2v_tiny.safetensors"
    deltas = write_lightx2v_lora(lora, plain.pipe.transformer)
    assert_fused(plain, backend(step, **spec, lora_path=str(lora)), deltas)


@pytest.mark.parametrize("naming", ["lightning", "diffusion_model"])
def test_a_lightning_lora_fuses_into_qwen_image_edit(naming: str, tmp_path: Path) -> None:
    """Qwen-Image-Lightning ships diffusers module names with lora_down/lora_up and an alpha per layer (V1.0);
    other Qwen-Image LoRAs put `diffusion_model.` before them and name the halves lora_A/lora_B."""
    spec = {"kind": "qwen_image_edit", "path": "tiny:qwen_image_edit", "steps": 1, "target_area": 4096}
    plain = backend("editor", **spec)
    generator = torch.Generator().manual_seed(0)
    tensors, deltas = {}, {}
    for i, block in enumerate(plain.pipe.transformer.transformer_blocks):
        for name in ("attn.to_q", "attn.add_k_proj", "img_mlp.net.2"):
            down, up = low_rank(block.get_submodule(name), generator)
            stem = f"transformer_blocks.{i}.{name}"
            if naming == "lightning":
                alpha = 4.0  # the forward pass scales by alpha / rank
                tensors |= {f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up}
                tensors[f"{stem}.alpha"] = torch.tensor(alpha)
                deltas[f"{stem}.weight"] = up @ down * alpha / RANK
            else:
                tensors |= {f"diffusion_model.{stem}.lora_A.weight": down, f"diffusion_model.{stem}.lora_B.weight": up}
                deltas[f"{stem}.weight"] = up @ down
    save_file(tensors, tmp_path / "lightning.safetensors")
    assert_fused(plain, backend("editor", **spec, lora_path=str(tmp_path / "lightning.safetensors")), deltas)


def test_cfg_free_sampling_runs_one_transformer_pass_per_step(clip: np.ndarray) -> None:
    depth = np.linspace(0, 1, clip[..., 0].size, dtype=np.float32).reshape(clip.shape[:3])
    args = (clip, clip[0], 0, depth, "a rabbit drawn in pencil")
    for guidance, passes in ((1.2, 2), (1.0, 1)):  # diffusers runs CFG only above 1
        prop = backend("propagator", kind="wan_vace", **WAN, steps=1, guidance_scale=guidance)
        assert transformer_passes(prop.pipe, lambda p=prop: p.propagate(*args, seed=1)) == passes
    # The enhancer at CFG 1: strength 0.5 of a 4-step schedule is 2 steps, 2 passes.
    enh = backend(
        "enhancer", kind="wan_v2v", path="tiny:wan_v2v", steps=4, strength=0.5, height=32, width=32, guidance_scale=1.0
    )
    assert transformer_passes(enh.pipe, lambda: enh.enhance(clip, clip, "", seed=0)) == 2
    # Qwen-Image-Edit at true_cfg_scale 1: no negative pass, and the negative prompt is never encoded.
    editor = backend(
        "editor",
        kind="qwen_image_edit",
        path="tiny:qwen_image_edit",
        steps=2,
        target_area=1024,
        true_cfg_scale=1.0,
        flow_shift=3.0,
    )
    assert transformer_passes(editor.pipe, lambda: editor.edit(clip[0], "make it a sketch", seed=0)) == 2


def test_the_lightning_schedule_shifts_by_three_at_every_size() -> None:
    editor = backend("editor", kind="qwen_image_edit", path="tiny:qwen_image_edit", steps=8, flow_shift=3.0)
    config = editor.pipe.scheduler.config
    assert config.base_shift == config.max_shift == pytest.approx(np.log(3.0))


def attention_backends(model) -> set[str]:  # type: ignore[no-untyped-def]
    return {m.processor._attention_backend.value for m in model.modules() if hasattr(m, "processor")}


def test_a_kernel_that_cannot_run_here_falls_back_to_pytorchs_attention_in_one_warning_line(
    clip: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """On a CPU (or without the sageattention package) `attention: sage` runs PyTorch's attention: the same video
    as `native`, one warning naming the option, and a spec_id that says what ran."""
    depth = np.linspace(0, 1, clip[..., 0].size, dtype=np.float32).reshape(clip.shape[:3])
    native = backend("propagator", kind="wan_vace", **WAN, steps=1, attention="native")
    with caplog.at_level("WARNING", logger="models.pipelines"):
        asked = backend("propagator", kind="wan_vace", **WAN, steps=1, attention="sage")
    warned = [r.getMessage() for r in caplog.records if r.name == "models.pipelines"]
    assert len(warned) == 1 and "\n" not in warned[0]
    assert warned[0].startswith("backends.propagator.attention: 'sage' cannot run here (device 'cpu' is not a CUDA")
    assert attention_backends(asked.pipe.transformer) == attention_backends(native.pipe.transformer) == {"native"}
    assert asked.spec_id == native.spec_id and ":attn-" not in asked.spec_id
    made = [b.propagate(clip, clip[0], 0, depth, "x", seed=0) for b in (native, asked)]
    assert np.array_equal(*made)


def test_sage_is_swapped_in_and_every_attention_call_goes_to_its_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SageAttention2 is installed and the device is a CUDA GPU, every attention of the denoiser goes
    through diffusers' `sage` backend to the kernel. Here the kernel is a stand-in that records its calls and
    computes exact attention in sageattn's layout (the real one needs a GPU: test_sage_runs_on_a_gpu)."""
    from diffusers.models import attention_dispatch

    from models.pipelines import set_attention

    calls: list[str] = []

    def sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False):  # type: ignore[no-untyped-def]
        calls.append(tensor_layout)
        heads_first = (t.transpose(1, 2) for t in (q, k, v))  # diffusers passes NHD: batch, tokens, heads, dim
        return torch.nn.functional.scaled_dot_product_attention(*heads_first, scale=sm_scale).transpose(1, 2)

    monkeypatch.setattr(attention_dispatch, "_CAN_USE_SAGE_ATTN", True)
    monkeypatch.setattr(attention_dispatch, "sageattn", sageattn)
    model = vace_with_fp8_sizes().eval()
    inputs = {
        "hidden_states": torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(0)),
        "timestep": torch.tensor([500.0]),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1)),
        "control_hidden_states": torch.randn(1, 96, 2, 8, 8, generator=torch.Generator().manual_seed(2)),
        "return_dict": False,
    }
    with torch.inference_mode():
        assert set_attention(model, "native", "propagator", "cuda") == "native"
        exact = model(**inputs)[0]
        assert set_attention(model, "sage", "propagator", "cuda") == "sage"
        assert attention_backends(model) == {"sage"}
        routed = model(**inputs)[0]
    attentions = sum(hasattr(m, "processor") for m in model.modules())
    assert calls == ["NHD"] * attentions  # self- and cross-attention of every block and context block, once each
    assert torch.allclose(routed, exact, atol=1e-5)


@pytest.mark.gpu
def test_sage_runs_on_a_gpu() -> None:
    """The real kernel, where SageAttention2 and a CUDA GPU are here: within 8-bit attention's error of exact."""
    from diffusers.models.attention_dispatch import _CAN_USE_SAGE_ATTN

    from models.pipelines import set_attention

    if not (_CAN_USE_SAGE_ATTN and torch.cuda.is_available()):
        pytest.skip("needs sageattention>=2.1.1 and a CUDA GPU")
    model = vace_with_fp8_sizes().to("cuda", torch.bfloat16).eval()
    x = torch.randn(1, 16, 2, 16, 16, device="cuda", dtype=torch.bfloat16)
    inputs = {"hidden_states": x, "timestep": torch.tensor([500.0], device="cuda"), "return_dict": False}
    inputs |= {"encoder_hidden_states": torch.randn(1, 8, 32, device="cuda", dtype=torch.bfloat16)}
    inputs |= {"control_hidden_states": torch.randn(1, 96, 2, 16, 16, device="cuda", dtype=torch.bfloat16)}
    with torch.inference_mode():
        set_attention(model, "native", "propagator", "cuda")
        exact = model(**inputs)[0].float()
        assert set_attention(model, "sage", "propagator", "cuda") == "sage"
        sage = model(**inputs)[0].float()
    assert (sage - exact).abs().mean() < 0.05 * exact.abs().mean()


def test_a_bfloat16_vae_makes_the_float32_vaes_video_within_two_levels(clip: np.ndarray) -> None:
    """`vae_dtype: bfloat16` (the fast preset) through the whole propagation, against float32, on the tiny model:
    measured 0.8 levels of 255 apart on average, 99% of values within 6, so the bounds are 2 and 10."""
    depth = np.linspace(0, 1, clip[..., 0].size, dtype=np.float32).reshape(clip.shape[:3])
    videos = {}
    for dtype in ("float32", "bfloat16"):
        prop = backend("propagator", kind="wan_vace", **WAN, steps=2, vae_dtype=dtype)
        assert prop.pipe.vae.dtype == getattr(torch, dtype) and prop.pipe.transformer.dtype == torch.float32
        videos[dtype] = prop.propagate(clip, clip[0], 0, depth, "a rabbit", seed=1).astype(int)
    apart = np.abs(videos["float32"] - videos["bfloat16"])
    assert 0 < apart.mean() < 2 and np.percentile(apart, 99) <= 10


def test_fp8_on_a_device_without_fp8_fails_before_loading_naming_the_option() -> None:
    expected = r"^backends.enhancer.quantization: 'fp8' cannot run here: device 'cpu' is not a CUDA GPU$"
    with pytest.raises(BackendConfigError, match=expected):
        backend("enhancer", kind="wan_v2v", path="tiny:wan_v2v", quantization="fp8")


def vace_with_fp8_sizes():  # type: ignore[no-untyped-def]
    """A tiny VACE transformer whose linears have sizes FP8 matmuls take (multiples of 16)."""
    from diffusers import WanVACETransformer3DModel

    return WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        vace_layers=[0],
        vace_in_channels=96,
    )


def test_fp8_takes_the_block_linears_and_leaves_embedders_and_head_in_bf16() -> None:
    model = vace_with_fp8_sizes()
    chosen = fp8_linears(model)
    assert {"blocks.0.attn1.to_q", "blocks.1.ffn.net.2", "vace_blocks.0.attn2.to_out.0"} <= set(chosen)
    assert "vace_blocks.0.proj_out" in chosen  # the context projections are block linears too
    assert not any(name.startswith(("condition_embedder", "proj_out", "patch_embedding")) for name in chosen)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")]
    assert set(linears) <= set(chosen)


@pytest.mark.skipif(fp8_unsupported("cuda") is not None, reason=f"FP8 quantization: {fp8_unsupported('cuda')}")
def test_fp8_quantizes_the_block_linears_on_a_gpu_with_fp8() -> None:
    """torchao's FP8 dynamic quantization asserts CUDA compute capability >= 8.9 (or MI300/XPU): it never runs
    on CPU, so this runs only where a GPU with FP8 is present."""
    from models.pipelines import quantize_fp8

    model = vace_with_fp8_sizes().to(torch.bfloat16)
    chosen = fp8_linears(model)
    quantize_fp8(model, "cuda", "propagator")
    assert {type(m.weight).__name__ for m in chosen.values()} == {"Float8Tensor"}
    assert type(model.proj_out.weight) is torch.nn.Parameter and model.proj_out.weight.dtype == torch.bfloat16


def test_both_presets_validate_and_a_bad_value_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    import yaml

    from agent.config import ConfigError, load_config
    from bench.stages import CONFIGS

    for preset in ("paper", "fast", "fast_480p"):
        load_config("full", CONFIGS / f"{preset}.yaml")
    fast = yaml.safe_load((CONFIGS / "fast.yaml").read_text())
    fast["backends"]["propagator"]["quantization"] = "fp16"
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(fast))
    with pytest.raises(ConfigError, match=r"backends.propagator.quantization: Input should be 'none' or 'fp8'$") as e:
        load_config("full", tmp_path / "fast.yaml")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"backends.enhancer.attention: Input should be 'native', 'flash' or 'sage'"):
        load_config("full", CONFIGS / "fast.yaml", overrides={"backends": {"enhancer": {"attention": "flash3"}}})


@pytest.mark.parametrize(
    "preset, clip", [("fast", (720, 1280, 101)), ("fast_480p", (480, 832, 81)), ("paper", (720, 1280, 101))]
)
def test_each_preset_states_the_clip_it_makes_and_its_figures_are_for_that_clip(preset: str, clip: tuple) -> None:
    """The sizes a run uses are the preset file's own (not the full profile's defaults underneath), the same at
    every stage, and bench.stages prices the preset at them."""
    from agent.config import load_config
    from bench.stages import PRESETS, preset_sizes

    cfg = load_config("full", PRESETS[preset])
    height, width, frames = clip
    assert (cfg.backends.propagator["height"], cfg.backends.propagator["width"]) == (height, width)
    assert (cfg.backends.enhancer["height"], cfg.backends.enhancer["width"]) == (height, width)
    assert cfg.backends.propagator["num_frames"] == cfg.tools.ingest.num_frames == cfg.policy.min_frames == frames
    assert cfg.tools.ingest.max_side == width
    assert preset_sizes(preset)["clip"] == clip


def test_the_480p_fast_preset_differs_from_the_720p_one_only_in_its_sizes() -> None:
    import yaml

    from bench.stages import PRESETS

    fast, small = (yaml.safe_load(PRESETS[p].read_text()) for p in ("fast", "fast_480p"))
    sizes = {"height", "width", "num_frames", "fps", "max_side", "min_frames", "prior_stage_device_seconds"}

    def without_sizes(node):  # type: ignore[no-untyped-def]
        return {k: without_sizes(v) for k, v in node.items() if k not in sizes} if isinstance(node, dict) else node

    assert without_sizes(fast) == without_sizes(small)
    assert (
        fast["backends"]["propagator"]["attention"] == "sage"
        and fast["backends"]["enhancer"]["vae_dtype"] == "bfloat16"
    )
