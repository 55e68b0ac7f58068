"""The judges and the captioner decode under their answer's JSON schema: a model that writes garbage (random
weights) still answers in the schema, so no llm_schema failure can come from an in-process model."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.tiny

import xgrammar  # noqa: E402
from tokenizers import pre_tokenizers  # noqa: E402

from agent.config import load_config  # noqa: E402
from agent.policy import pass_thresholds  # noqa: E402
from bench.bad_inputs import moving_frames  # noqa: E402
from models.pool import ModelPool  # noqa: E402
from models.protocols import JudgeRequest  # noqa: E402
from models.qwen_vl import AnswerTruncatedError  # noqa: E402
from models.registry import backend_class, build_backend  # noqa: E402
from models.tiny import qwen_tokenizer  # noqa: E402
from prompts.loader import PromptBook  # noqa: E402
from store.artifacts import ArtifactStore  # noqa: E402
from store.engine import open_engine  # noqa: E402
from tests.contracts import set_up_on  # noqa: E402
from tools.base import ToolContext, ToolError  # noqa: E402
from tools.caption_clip import CaptionClip, CaptionClipConfig, CaptionClipInput, caption_answer  # noqa: E402
from tools.judge import (  # noqa: E402
    JudgeAnswer,
    JudgeConfig,
    JudgeInput,
    JudgeKeyframe,
    JudgeVideo,
    ask_judge,
    rubric_criteria,
)
from tools.plan_instruction import (  # noqa: E402
    PlanAnswer,
    PlanInstruction,
    PlanInstructionConfig,
    PlanInstructionInput,
    planner_schema,
)

TINY_VL = {"kind": "qwen2_5_vl", "path": "tiny:qwen2_5_vl", "device": "cpu", "dtype": "float32"}
KEYFRAME_CRITERIA = ("instruction_fidelity", "source_preservation", "visual_quality", "safety")
SHORT = JudgeConfig(max_reason_chars=8)


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool()


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(io=ArtifactStore(tmp_path, open_engine(f"sqlite:///{tmp_path}/db.sqlite")), prompts=PromptBook())


def tiny_vl(step: str, pool: ModelPool, max_new_tokens: int = 480):  # type: ignore[no-untyped-def]
    return build_backend(step, {**TINY_VL, "max_new_tokens": max_new_tokens}, pool)


def clip(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(moving_frames(9, 48, 64).astype(int) + rng.integers(-40, 40, (1, 1, 1, 3)), 0, 255).astype(np.uint8)


def test_tiny_tokenizer_is_byte_level_with_every_byte_a_token() -> None:
    tokenizer = qwen_tokenizer()
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer)
    assert info.vocab_type == xgrammar.VocabType.BYTE_LEVEL
    vocab = tokenizer.get_vocab()
    byte_tokens = pre_tokenizers.ByteLevel.alphabet()  # byte-level BPE's stand-ins for the 256 bytes
    assert len(byte_tokens) == 256 and all(t in vocab for t in byte_tokens)  # any JSON text can be written


def test_random_weights_write_garbage_without_the_schema(pool: ModelPool, ctx: ToolContext) -> None:
    judge = tiny_vl("video_judge", pool, max_new_tokens=48)
    request = JudgeRequest(clip(0), clip(1), "Score the edit as JSON.", "x")  # no answer schema
    answer = JudgeAnswer.for_criteria(KEYFRAME_CRITERIA, 8)
    with pytest.raises(ToolError) as err:
        ask_judge(judge, request, answer, 2, ctx)
    assert err.value.kind == "llm_schema" and "2 tries" in err.value.detail
    # The second try was a re-ask: the garbage answer and what was wrong with it, as one more turn.
    assert [p.name for p in ctx.rendered] == ["answer.reask.j2"] and len(ctx.usage["calls"]) == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_weight_judges_still_write_a_valid_verdict(seed: int, pool: ModelPool, ctx: ToolContext) -> None:
    source, edited = clip(seed), clip(seed + 10)
    frames = JudgeInput(
        source=ctx.io.write_image(source[0]),
        edited=ctx.io.write_image(edited[0]),
        instruction="make it sepia",
        target_description=f"the clip in sepia {seed}",
    )
    video = frames.model_copy(
        update={"source": ctx.io.write_video(source, 8.0), "edited": ctx.io.write_video(edited, 8.0)}
    )
    keyframe_verdict = set_up_on(JudgeKeyframe(SHORT), tiny_vl("keyframe_judge", pool))(frames, ctx)
    video_verdict = set_up_on(JudgeVideo(SHORT), tiny_vl("video_judge", pool))(video, ctx)
    for verdict, template in ((keyframe_verdict, "judge_keyframe.j2"), (video_verdict, "judge_video.j2")):
        criteria = rubric_criteria(ctx, template)
        assert list(verdict.scores) == list(verdict.reasons) == list(criteria)
        assert all(0 <= s <= 10 for s in verdict.scores.values())
        assert all(1 <= len(r) <= 8 for r in verdict.reasons.values())
    assert "temporal_consistency" in video_verdict.scores and "temporal_consistency" not in keyframe_verdict.scores


def test_the_schema_follows_the_rubric_template(pool: ModelPool, ctx: ToolContext, tmp_path: Path) -> None:
    rubric = tmp_path / "rubric"
    rubric.mkdir()
    (rubric / "judge_keyframe.j2").write_text("{# criteria: looks_right, copy #}\nScore {{ instruction }}.")
    ctx = ToolContext(io=ctx.io, prompts=PromptBook(rubric))
    inp = JudgeInput(
        source=ctx.io.write_image(clip(0)[0]),
        edited=ctx.io.write_image(clip(1)[0]),
        instruction="x",
        target_description="y",
    )
    verdict = set_up_on(JudgeKeyframe(SHORT), tiny_vl("keyframe_judge", pool))(inp, ctx)
    assert list(verdict.scores) == ["looks_right", "copy"]  # `copy` would shadow a pydantic method: aliased
    (rubric / "judge_keyframe.j2").write_text("Score {{ instruction }}.")
    with pytest.raises(ToolError, match=r"judge_keyframe.j2 must name its criteria") as err:
        set_up_on(JudgeKeyframe(SHORT), tiny_vl("keyframe_judge", pool))(inp, ctx)
    assert err.value.kind == "bad_input"


def test_random_weight_captioner_writes_a_caption(pool: ModelPool, ctx: ToolContext) -> None:
    tool = set_up_on(CaptionClip(CaptionClipConfig(max_chars=16)), tiny_vl("captioner", pool, max_new_tokens=80))
    caption = tool(CaptionClipInput(clip=ctx.io.write_video(clip(3), 8.0)), ctx).caption
    assert 1 <= len(caption) <= 16 and not caption[0].isspace()


def test_random_weight_planner_answers_a_plan_or_that_none_fits(pool: ModelPool, ctx: ToolContext) -> None:
    """Under the planner's schema a random-weight VLM writes prose that passes every check: each answer is a
    plan or the answer that no edit fits, never one re-asked or left to the rule planner."""
    config = PlanInstructionConfig(max_words=3, max_target_sentences=1)
    tool = set_up_on(PlanInstruction(config), tiny_vl("planner", pool, max_new_tokens=256))
    clip_ref = ctx.io.write_video(clip(4), 8.0)
    plans, unfit = [], []
    for slot in range(6):
        inp = PlanInstructionInput(
            caption="a", clip=clip_ref, category="text", category_description="Add a subtitle.", clip_seed=0, slot=slot
        )
        call = ToolContext(io=ctx.io, prompts=ctx.prompts)
        try:
            plans.append(tool(inp, call))
        except ToolError as err:
            assert err.kind == "category_unfit", err
            unfit.append(err.detail)
        assert "rejected" not in call.usage and "fallback" not in call.usage, call.usage
        assert call.usage["completion_tokens"] > 0
    assert plans and all(p.planner.startswith("qwen2.5-vl:") and p.category == "text" for p in plans)
    assert len({p.instruction for p in plans}) == len(plans)  # seeded by the slot: a clip's episodes differ
    assert all(reason.startswith("qwen2.5-vl:") for reason in unfit)


def test_the_vlm_planner_sees_the_clip_and_rewrites_from_the_judges_reasons(pool: ModelPool, ctx: ToolContext) -> None:
    config = PlanInstructionConfig(max_words=3, max_target_sentences=1)
    tool = set_up_on(PlanInstruction(config), tiny_vl("planner", pool, max_new_tokens=256))
    rewrite = PlanInstructionInput(
        caption="a",
        clip=ctx.io.write_video(clip(5), 8.0),
        category="global_style",
        category_description="Restyle the whole frame.",
        clip_seed=0,
        slot=1,
        feedback="- safety: scored 1.0 (needs 9); the edit is unsafe",
        previous_instruction="Make it red.",
    )
    tokens = {}
    for name, inp in (("with the clip", rewrite), ("caption only", rewrite.model_copy(update={"clip": None}))):
        call = ToolContext(io=ctx.io, prompts=ctx.prompts)
        try:
            tool(inp, call)
        except ToolError as err:
            assert err.kind == "category_unfit", err
        prompt = next(p.text for p in call.rendered if p.name == "rewrite_instruction.user.j2")
        assert "safety: scored 1.0" in prompt and "Make it red." in prompt
        assert ("Frames sampled from it" in prompt) == (inp.clip is not None)
        tokens[name] = call.usage["prompt_tokens"]
    assert tokens["with the clip"] > tokens["caption only"] + 10  # the frames' tokens


def test_a_budget_too_small_for_the_answer_is_a_clear_error(pool: ModelPool) -> None:
    judge = tiny_vl("keyframe_judge", pool, max_new_tokens=20)
    schema = JudgeAnswer.for_criteria(KEYFRAME_CRITERIA, 8).model_json_schema()
    with pytest.raises(AnswerTruncatedError, match="max_new_tokens=20"):
        judge.judge(JudgeRequest(clip(0)[0], clip(1)[0], "Score.", "x", answer_schema=schema))


def longest_answer_bytes(model: type, answer: dict, numbers: int, schema: dict | None = None) -> int:
    """Bytes of the longest answer the schema's grammar allows, built from `answer` (every string at its
    bound in 4-byte characters; each of `numbers` scores written 10.000000, the grammar's longest number),
    after checking that the grammar (of `schema`, or the model's own) accepts it and the model validates it.
    Byte-level BPE writes at most one token per byte."""
    text = json.dumps(answer, ensure_ascii=False).replace("10.0", "10.000000")
    assert text.count("10.000000") == numbers
    model.model_validate_json(text)
    info = xgrammar.TokenizerInfo.from_huggingface(qwen_tokenizer())
    grammar = xgrammar.GrammarCompiler(info, cache_enabled=False).compile_json_schema(
        json.dumps(schema or model.model_json_schema()), any_whitespace=False
    )
    assert xgrammar.GrammarMatcher(grammar).accept_string(text)
    return len(text.encode())


@pytest.mark.parametrize("profile", ["tiny", "full"])
def test_profile_token_budgets_close_the_longest_answer(profile: str, ctx: ToolContext) -> None:
    config = load_config(profile, None, {})
    wide = "\U0001d11e"  # a 4-byte character
    for step, template in (("keyframe_judge", "judge_keyframe.j2"), ("video_judge", "judge_video.j2")):
        criteria = rubric_criteria(ctx, template)
        bound = config.tools.judge.max_reason_chars
        answer = {"scores": dict.fromkeys(criteria, 10.0), "reasons": dict.fromkeys(criteria, wide * bound)}
        need = longest_answer_bytes(JudgeAnswer.for_criteria(criteria, bound), answer, len(criteria))
        assert budget(config.backends.model_dump()[step]) >= need, (profile, step, need)
    max_chars = config.tools.caption_clip.max_chars
    need = longest_answer_bytes(caption_answer(max_chars), {"caption": wide * max_chars}, 0)
    assert budget(config.backends.captioner) >= need, (profile, "captioner", need)
    planning = config.tools.plan_instruction
    word = "“" + "a" * 16 + "”,"  # the longest word the schema admits, in the most bytes
    sentence = " ".join([word] * planning.max_words)[:-1] + "."
    category = max(config.categories, key=len)
    plan = {
        "instruction": sentence,
        "category": category,
        "target_description": " ".join([sentence] * planning.max_target_sentences),
    }
    need = longest_answer_bytes(PlanAnswer, plan, 0, planner_schema(category, planning))
    assert budget(config.backends.planner) >= need, (profile, "planner", need)


def budget(spec: dict) -> int:
    """The spec's max_new_tokens, or the backend's default."""
    default = inspect.signature(backend_class("captioner", spec["kind"]).__init__).parameters["max_new_tokens"].default
    return int(spec.get("max_new_tokens", default))


@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_policy_thresholds_name_criteria_the_judges_score(profile: str, ctx: ToolContext) -> None:
    config = load_config(profile, None, {})
    for step, template, stage in (
        ("keyframe_judge", "judge_keyframe.j2", "keyframe"),
        ("video_judge", "judge_video.j2", "video"),
    ):
        spec = getattr(config.backends, step)
        scored = backend_class(step, spec["kind"]).criteria or rubric_criteria(ctx, template)
        for category in (None, *config.categories):  # the policy's table, and each category's own
            assert set(pass_thresholds(config.policy, stage, category)) <= set(scored), (profile, step, category)


def test_the_default_reason_bound_compiles(pool: ModelPool) -> None:
    # 200-character reasons trip xgrammar 0.2.8's grammar cache; the backend compiles without it.
    schema = JudgeAnswer.for_criteria(KEYFRAME_CRITERIA, JudgeConfig().max_reason_chars).model_json_schema()
    assert tiny_vl("keyframe_judge", pool).loaded.grammar(schema) is not None


@pytest.mark.slow
def test_decoding_bench_prints_both_rates() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.decoding", "--repeats", "1", "--max-reason-chars", "2"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"with the schema \(xgrammar\)\s+[\d.]+ tokens/s", result.stdout), result.stdout
    assert re.search(r"free text\s+[\d.]+ tokens/s", result.stdout), result.stdout
