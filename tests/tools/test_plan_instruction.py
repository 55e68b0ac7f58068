"""The plan_instruction tool's contract: its input, its output, its error kinds, and what it does with an
answer it cannot use (re-ask with the problems named, then the rule planner), on the rule planner and on
a real HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from pydantic import ValidationError

from bench.bad_inputs import HOSTILE_INSTRUCTION, HOSTILE_TARGET
from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from models.cpu.rule_planner import RulePlanner, fitting_options
from models.cpu.styles import StyleEditor
from models.llm_openai import OpenAIPlanner
from prompts.loader import PromptBook
from tests.contracts import set_up_on
from tools.base import ToolContext, ToolError
from tools.plan_instruction import (
    PlanAnswer,
    PlanInstruction,
    PlanInstructionConfig,
    PlanInstructionInput,
    PlanInstructionOutput,
    planner_written,
    prose_max_chars,
    prose_pattern,
    text_problems,
)

# What a hostile endpoint answered in issue 13, verbatim.
CAPTION = "A bright, gently moving landscape video scene, colourful, mostly green in tone."
ASKED = {"category": "global_style", "category_description": "Restyle the whole frame."}


class NoFiles:
    """The planner reads no artifacts."""


def context() -> ToolContext:
    return ToolContext(io=NoFiles(), prompts=PromptBook())  # type: ignore[arg-type]


def answer(
    instruction: str = "Make it look like a pencil sketch.", category: str = "global_style", target: str = ""
) -> str:
    target = target or "A rabbit in a meadow, drawn in pencil."
    return json.dumps({"instruction": instruction, "category": category, "target_description": target})


def plan(planner: object, config: PlanInstructionConfig | None = None, effects: bool = False, **inp: object):  # type: ignore[no-untyped-def]
    editor = StyleEditor if effects else None  # the cpu editor's reading of what an instruction does
    tool = set_up_on(PlanInstruction(config or PlanInstructionConfig(), None, editor), planner)
    ctx = context()
    args = {"caption": CAPTION, "clip_seed": 1, "slot": 0, **ASKED, **inp}
    return tool(PlanInstructionInput(**args), ctx), ctx  # type: ignore[arg-type]


def endpoint(server: ScriptedLLMServer) -> OpenAIPlanner:
    return OpenAIPlanner(base_url=server.url, model="planner", api_key_env="DITTO_TEST_KEY", deadline_s=5.0)


def test_input_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="instructions"):
        PlanInstructionInput(caption=CAPTION, clip_seed=1, slot=0, **ASKED, instructions="x")  # type: ignore[call-arg]


def test_rule_planner_output_is_validated_text_and_names_its_planner() -> None:
    out, ctx = plan(RulePlanner())
    assert isinstance(out, PlanInstructionOutput) and out.planner == "rule-planner-v3"
    assert out.category == "global_style" and out.target_description.startswith(CAPTION)
    assert ctx.usage == {}  # no model was called
    assert [p.name for p in ctx.rendered] == ["edit_vocabulary.yaml"]  # it reads no prompt: none is rendered


def test_every_phrasing_of_the_vocabulary_passes_the_text_checks() -> None:
    vocabulary = yaml.safe_load(PromptBook().source("edit_vocabulary.yaml").text)
    # A caption every edit's `needs` fits, so each phrasing is checked with its placeholders filled in.
    caption = "A rabbit hops. The grass sways. The most distinct object is green. The bottom of the frame is plain."
    options = [o for c in {e["category"] for e in vocabulary["edits"]} for o in fitting_options(vocabulary, c, caption)]
    assert len(options) == sum(len(e["instructions"]) for e in vocabulary["edits"])
    for phrasing, target in options:
        assert text_problems(phrasing, 2) == [], phrasing
        assert text_problems(planner_written(target, caption), 5) == [], target


def test_the_hostile_strings_are_refused_with_every_problem_named() -> None:
    assert text_problems(HOSTILE_INSTRUCTION, 2) == [
        "contains markup (an HTML or XML tag)",
        "contains template syntax ({{ }}, {% %} or {# #})",
        "contains shell metacharacters ($( ), ${ }, backticks, ;, | or &&)",
        "contains a file path",
    ]
    assert text_problems(HOSTILE_TARGET, 5) == [
        "contains template syntax ({{ }}, {% %} or {# #})",
        "contains shell metacharacters ($( ), ${ }, backticks, ;, | or &&)",
        "contains a URL",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("=HYPERLINK(A1) makes it night.", "spreadsheet formula"),
        ("+ Make it snow heavily.", "spreadsheet formula"),
        ("@SUM turn it to night.", "spreadsheet formula"),
        ("Make it night. Add rain. Add fog.", "3 sentences"),
        ("Use the style of www.example.com for it.", "a URL"),
        ("Save it to ~/edits and make it night.", "a file path"),
        ("Make it night && keep the people.", "shell"),
        ("Make it night\x00 please.", "control"),
        ("1234 5678 90 !!!", "not natural-language"),
        ("Make it night {# note #}.", "template syntax"),
    ],
)
def test_text_that_is_not_plain_prose_is_named(text: str, problem: str) -> None:
    assert any(problem in p for p in text_problems(text, 2))


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("not json at all", "no JSON object"),
        ('{"instruction": "Make it a watercolour.", "category": "style"', "not closed"),
        ('{"instruction": "Make it a watercolour.", "category": }', "not valid JSON"),
        ('{"instruction": "Make it a watercolour."}', "target_description: Field required"),
        ("[1, 2]", "no JSON object"),
        (answer(category="rm -rf /"), "category 'rm -rf /' is not allowed"),
        (answer(HOSTILE_INSTRUCTION, target=HOSTILE_TARGET), "instruction contains markup"),
        (answer(target=HOSTILE_TARGET), "target_description contains template syntax"),
    ],
)
def test_a_bad_answer_is_re_asked_with_its_problem_named(bad: str, named: str) -> None:
    with ScriptedLLMServer([Reply(bad), Reply(plan_json("Make it a watercolour."))]) as server:
        out, ctx = plan(endpoint(server))
    assert out.instruction == "Make it a watercolour." and out.planner == "openai-chat:planner"
    reask = [p for p in ctx.rendered if p.name == "plan_instruction.reask.j2"]
    assert len(reask) == 1 and named in reask[0].text
    messages = server.requests[1]["body"]["messages"]
    assert messages[2] == {"role": "assistant", "content": bad} and messages[3]["content"] == reask[0].text
    assert ctx.usage["rejected"][0]["answer"] == bad and len(ctx.usage["calls"]) == 2
    assert ctx.usage["prompt_tokens"] > 0 and "fallback" not in ctx.usage


def test_the_captioners_text_is_not_held_against_the_planner() -> None:
    garbage = "the\ufffdsco\u0003 preservation#T5; ason\u0005 | x"  # what a random-weight captioner writes
    out, _ = plan(RulePlanner(), caption=garbage)
    assert out.target_description.startswith(" ".join(garbage.split()))
    with ScriptedLLMServer([Reply(answer(target=garbage + " Drawn in pencil; rm -rf x."))]) as server:
        out, ctx = plan(endpoint(server), caption=garbage)
    assert out.planner == "rule-planner-v3"  # what the planner added after the caption is checked
    assert ctx.usage["rejected"][0]["problems"] == [
        "target_description contains shell metacharacters ($( ), ${ }, backticks, ;, | or &&)"
    ]
    formula = "=1+1 a clip of a meadow."
    with ScriptedLLMServer([Reply(answer(target=formula + " Drawn in pencil.")), Reply(answer())]) as server:
        out, ctx = plan(endpoint(server), caption=formula)
    assert "spreadsheet formula" in ctx.usage["rejected"][0]["problems"][0]  # the whole CSV cell counts


def test_the_planner_is_asked_for_one_category_and_an_answer_in_another_is_re_asked() -> None:
    replies = [Reply(answer(category="global")), Reply(answer(category="local_add")), Reply(answer())]
    with ScriptedLLMServer(replies) as server:
        out, ctx = plan(endpoint(server))
    assert out.category == "global_style"
    first = server.requests[0]["body"]
    assert 'category "global_style": Restyle the whole frame.' in first["messages"][0]["content"]
    plan_branch, unfit_branch = first["response_format"]["json_schema"]["schema"]["anyOf"]
    assert plan_branch["properties"]["category"]["enum"] == ["global_style"]
    assert unfit_branch["required"] == ["does_not_fit"]
    reasks = [p.text for p in ctx.rendered if p.name == "plan_instruction.reask.j2"]
    assert "did you mean 'global_style'?" in reasks[0] and "exactly one of: global_style." in reasks[0]
    assert "category 'local_add' is not allowed" in reasks[1]


def test_an_instruction_already_used_on_the_clip_is_re_asked() -> None:
    replies = [Reply(answer("make it look like a PENCIL sketch")), Reply(answer("Make it a watercolour."))]
    with ScriptedLLMServer(replies) as server:
        out, ctx = plan(endpoint(server), avoid=("Make it look like a pencil sketch.",))
    assert out.instruction == "Make it a watercolour."
    assert "repeats one already used" in ctx.rendered[-1].text


def test_the_same_edit_in_other_words_is_re_asked_and_the_answer_says_which_edit_it_makes() -> None:
    """Issue 27: two warm grades of bikes.mp4, worded differently, were both accepted."""
    earlier = ("Give the video a warm golden-hour grade.",)
    replies = [Reply(answer("Add a warm orange sunset tint.")), Reply(answer("Give the video an old sepia look."))]
    with ScriptedLLMServer(replies) as server:
        out, ctx = plan(endpoint(server), effects=True, avoid=earlier)
    assert out.instruction == "Give the video an old sepia look." and out.effect == "style:sepia"
    (rejected,) = ctx.usage["rejected"]  # recorded in the call's trace, with why
    assert rejected["problems"] == [
        "instruction makes the same edit (style:warm_grade) as “Give the video a warm golden-hour grade.”, already "
        "used on this video; write a different edit"
    ]
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert "nor make the same edit in other words" in user and earlier[0] in user  # the planner was told first
    out, _ = plan(RulePlanner(), effects=True, avoid=earlier)  # the rule planner never offers it
    assert out.planner == "rule-planner-v3" and out.effect not in (None, "style:warm_grade")


def test_an_endpoint_that_never_answers_well_falls_back_to_the_rule_planner() -> None:
    with ScriptedLLMServer([Reply(answer(HOSTILE_INSTRUCTION, target=HOSTILE_TARGET))]) as server:
        out, ctx = plan(endpoint(server), PlanInstructionConfig(max_reasks=2))
    assert len(server.requests) == 3  # the first answer and two re-asks
    assert out.planner == "rule-planner-v3" and ctx.usage["fallback"] == "rule-planner-v3"
    assert len(ctx.usage["rejected"]) == 3 and "{{" not in out.instruction
    assert [p.name for p in ctx.rendered].count("plan_instruction.reask.j2") == 2


def test_an_unreachable_endpoint_is_backend_unavailable_with_its_usage() -> None:
    with ScriptedLLMServer([Reply(status=503)]) as server, pytest.raises(ToolError) as err:
        tool = set_up_on(
            PlanInstruction(PlanInstructionConfig()),
            OpenAIPlanner(base_url=server.url, model="p", api_key_env="X", max_attempts=2),
        )
        ctx = context()
        tool(PlanInstructionInput(caption=CAPTION, clip_seed=1, slot=0, **ASKED), ctx)
    assert err.value.kind == "backend_unavailable" and err.value.field == "planner"
    assert ctx.usage["transport_retries"] == 1


def test_a_fallback_answer_that_fails_too_is_an_llm_schema_error_naming_it() -> None:
    # The rule planner's target starts with the caption: a caption that reads as a spreadsheet formula makes
    # every answer unfit (the whole CSV cell counts), and the error says why.
    with pytest.raises(ToolError) as err:
        plan(RulePlanner(), PlanInstructionConfig(max_reasks=1), caption="=1+1 a clip of a meadow.")
    assert err.value.kind == "llm_schema" and err.value.field == "answer"
    assert "so did the rule planner's" in err.value.detail and "spreadsheet formula" in err.value.detail


def test_a_category_with_no_phrasing_left_or_none_that_fits_is_category_unfit() -> None:
    vocabulary = yaml.safe_load(PromptBook().source("edit_vocabulary.yaml").text)
    every = tuple(p for edit in vocabulary["edits"] for p in edit["instructions"])
    with pytest.raises(ToolError) as err:
        plan(RulePlanner(), avoid=every)
    assert err.value.kind == "category_unfit" and err.value.field == "category"
    assert "already used" in err.value.detail
    with pytest.raises(ToolError) as err:  # the caption names no object to recolour
        plan(RulePlanner(), category="local_attribute", category_description="Recolour one object.")
    assert err.value.kind == "category_unfit" and "fits this clip" in err.value.detail


def test_rewrite_sends_the_judges_feedback() -> None:
    with ScriptedLLMServer([Reply(plan_json("Make it a watercolour."))]) as server:
        _, ctx = plan(endpoint(server), feedback="- edit_strength: scored 1.0", previous_instruction="Tint it.")
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert "edit_strength: scored 1.0" in user and "Tint it." in user
    assert ctx.rendered[1].name == "rewrite_instruction.user.j2"


def test_an_answer_that_no_edit_fits_is_category_unfit_with_its_reason() -> None:
    unfit = json.dumps({"does_not_fit": "The video shows no text and no plain band to put a caption in."})
    with ScriptedLLMServer([Reply(unfit)]) as server, pytest.raises(ToolError) as err:
        plan(endpoint(server), category="text", category_description="Add a subtitle.")
    assert err.value.kind == "category_unfit" and err.value.field == "category"
    assert err.value.detail == "openai-chat:planner: The video shows no text and no plain band to put a caption in."
    system = server.requests[0]["body"]["messages"][0]["content"]
    assert '{"does_not_fit": "..."}' in system  # the planner is told it may answer so


def test_a_reason_that_is_not_plain_prose_is_re_asked() -> None:
    hostile = json.dumps({"does_not_fit": "Nothing fits. <script>alert(1)</script>"})
    with ScriptedLLMServer([Reply(hostile), Reply(answer())]) as server:
        out, ctx = plan(endpoint(server))
    assert out.instruction == "Make it look like a pencil sketch."
    assert ctx.usage["rejected"][0]["problems"] == ["does_not_fit contains markup (an HTML or XML tag)"]


def test_the_schema_admits_the_vocabularys_prose_and_bounds_its_length() -> None:
    vocabulary = yaml.safe_load(PromptBook().source("edit_vocabulary.yaml").text)
    caption = "A rabbit hops. The grass sways. The most distinct object is green. The bottom of the frame is plain."
    options = [o for c in {e["category"] for e in vocabulary["edits"]} for o in fitting_options(vocabulary, c, caption)]
    pattern = re.compile(prose_pattern(16, 1))
    assert all(pattern.fullmatch(phrasing) for phrasing, _ in options), [p for p, _ in options if not pattern.match(p)]
    assert pattern.fullmatch("Add the subtitle “Here we go” at the bottom, in white letters.")
    for text in ('Add the subtitle "Here" now.', "Make it night {{ x }}.", "=1+1 night here.", "Night", "a; b."):
        assert not pattern.fullmatch(text), text  # what a grammar on this pattern cannot write
    # At the largest bounds the config admits, every text the pattern admits is within the answer's bounds.
    largest = PlanInstructionConfig.model_fields
    words, sentences = largest["max_words"].metadata[-1].le, largest["max_target_sentences"].metadata[-1].le
    limits = {
        name: next(m.max_length for m in f.metadata if hasattr(m, "max_length"))
        for name, f in PlanAnswer.model_fields.items()
        if name != "category"
    }
    assert prose_max_chars(words, 1) <= limits["instruction"]
    assert prose_max_chars(words, sentences) <= limits["target_description"]
