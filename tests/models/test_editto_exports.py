"""A trained Editto checkpoint loads where its users load it: diffusers' own `load_lora_weights` takes every
adapter and then computes what the trainer computes, and DiffSynth-Studio's LoRA loader (the one
infer_ditto.py calls through `pipe.load_lora(pipe.vace, path)`) maps every key onto its VACE model."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.tiny, pytest.mark.slow]

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from models.protocols import EDITTO_DIFFSYNTH, EDITTO_DIFFUSERS, Triplet  # noqa: E402
from models.tiny import materialize  # noqa: E402
from tests.models.test_editto_trainer import as_files, trainer  # noqa: E402

RANK, ALPHA = 4, 8  # alpha != rank: the exports must carry the scale alpha/rank that neither loader reads


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    rng = np.random.default_rng(1)
    src = (rng.random((9, 32, 32, 3)) * 255).astype(np.uint8)
    t = trainer(lora_rank=RANK, lora_alpha=ALPHA, lr=5e-2, seed=7)
    folder = tmp_path_factory.mktemp("editto")
    t.train(
        [as_files(Triplet(src, 255 - src, 255 - src[0], "invert the colours"), folder / "sample")],
        2,
        None,
        folder / "round",
    )
    folder = folder / "round"
    return t, folder


def transformer_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 16, 3, 4, 4, generator=g),
        "timestep": torch.tensor([500.0]),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=g),
        "control_hidden_states": torch.randn(1, 96, 3, 4, 4, generator=g),
    }


def test_diffusers_load_lora_weights_loads_every_adapter(trained: tuple[object, Path]) -> None:
    from diffusers import WanVACEPipeline

    t, folder = trained
    pipe = WanVACEPipeline.from_pretrained(str(materialize("wan_vace")), dtype=torch.float32)
    inputs = transformer_inputs()
    with torch.no_grad():
        base = pipe.transformer(**inputs, return_dict=False)[0]
        pipe.load_lora_weights(str(folder / EDITTO_DIFFUSERS))
        loaded = pipe.transformer(**inputs, return_dict=False)[0]
        ours = t.pipe.transformer(**inputs, return_dict=False)[0]  # type: ignore[attr-defined]
    adapters = [n for n, _ in pipe.transformer.named_parameters() if ".lora_" in n]
    assert len(adapters) == len(t.trained) > 0  # type: ignore[attr-defined]
    assert not torch.allclose(loaded, base)
    torch.testing.assert_close(loaded, ours, rtol=1e-4, atol=1e-5)  # the same layer, scale included


def test_diffsynth_lora_loader_maps_every_key(trained: tuple[object, Path]) -> None:
    from diffsynth.models.wan_video_vace import VaceWanModel
    from diffsynth.utils.lora.general import GeneralLoRALoader

    t, folder = trained
    state = load_file(folder / EDITTO_DIFFSYNTH)
    assert all(re.match(r"vace_blocks\.\d+\.(self_attn|cross_attn|ffn)\.", k) for k in state)
    vace = VaceWanModel(vace_layers=(0, 2), vace_in_dim=96, dim=24, num_heads=2, ffn_dim=32)  # the tiny model's
    before = {n: p.detach().clone() for n, p in vace.named_parameters()}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        GeneralLoRALoader().fuse_lora_to_base_model(vace, state)
    layers = len(state) // 2
    assert layers == len(t.trained) // 2  # type: ignore[attr-defined]
    assert f"{layers} tensors are fused" in printed.getvalue()  # every A/B pair found its module
    ours = t.pipe.transformer  # type: ignore[attr-defined]
    for key in (k for k in state if ".lora_A." in k):
        module = key.split(".lora_A.")[0]
        delta = vace.get_submodule(module).weight - before[module + ".weight"]
        layer = ours.get_submodule(to_diffusers(module))  # the same layer in the trainer's PEFT model
        expected = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
        assert expected.abs().sum() > 0
        torch.testing.assert_close(delta, expected.detach())


# diffusers' scripts/convert_wan_to_diffusers.py, VACE_TRANSFORMER_KEYS_RENAME_DICT: Wan/DiffSynth -> diffusers.
RENAME = {"self_attn.o": "attn1.to_out.0", "cross_attn.o": "attn2.to_out.0", "ffn.0": "ffn.net.0.proj"}
RENAME |= {f"{a}.{x}": f"{d}.to_{x}" for a, d in (("self_attn", "attn1"), ("cross_attn", "attn2")) for x in "qkv"}
RENAME |= {"ffn.2": "ffn.net.2"}


def to_diffusers(module: str) -> str:
    block, rest = module.split(".", 2)[:2], module.split(".", 2)[2]
    return ".".join(block) + "." + RENAME[rest]
