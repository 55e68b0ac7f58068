"""The OpenAI-compatible planner against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from models.llm_openai import OpenAIPlanner
from prompts.loader import PromptBook
from tests.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from tools.base import Resources, ToolContext, ToolError
from tools.plan_instruction import PlanInstruction, PlanInstructionConfig, PlanInstructionInput


class NoFiles:
    """The planner reads no artifacts."""


def plan_with(server: ScriptedLLMServer, timeout_s: float = 5.0, **inp: object):  # type: ignore[no-untyped-def]
    planner = OpenAIPlanner(
        base_url=server.url, model="tiny-planner", api_key_env="DITTO_TEST_KEY", timeout_s=timeout_s, max_attempts=3
    )
    tool = PlanInstruction(planner, PlanInstructionConfig(), Resources())
    ctx = ToolContext(io=NoFiles(), prompts=PromptBook())  # type: ignore[arg-type]
    args = {
        "caption": "A rabbit in a meadow.",
        "category": "global_style",
        "category_description": "Restyle the whole frame.",
        "clip_seed": 1,
        "slot": 0,
        **inp,
    }
    return tool(PlanInstructionInput(**args), ctx), ctx  # type: ignore[arg-type]


def test_good_answer_is_validated_and_prompts_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DITTO_TEST_KEY", "sk-secret-123")
    with ScriptedLLMServer([Reply("Sure! ```json\n" + plan_json() + "\n```")]) as server:
        answer, ctx = plan_with(server, avoid=("Make it night.",))
    assert answer.instruction == "Make it look like a pencil sketch." and answer.category == "global_style"
    body = server.requests[0]["body"]
    assert body["model"] == "tiny-planner" and body["response_format"] == {"type": "json_object"}
    assert "A rabbit in a meadow." in body["messages"][1]["content"]
    assert "Make it night." in body["messages"][1]["content"]  # the avoid list reaches the LLM
    assert '"global_style": Restyle the whole frame.' in body["messages"][0]["content"]  # one category asked for
    assert {k.lower(): v for k, v in server.requests[0]["headers"].items()}["authorization"] == "Bearer sk-secret-123"
    assert [p.name for p in ctx.rendered] == [
        "plan_instruction.system.j2",
        "plan_instruction.user.j2",
        "edit_vocabulary.yaml",
    ]


@pytest.mark.parametrize(
    "content",
    [
        "not json at all",
        '{"instruction": "x"',
        '{"instruction": "Do it."}',
        '{"instruction": "Paint it.", "category": "rm -rf /", "target_description": "a painting"}',
        "[1, 2]",
        plan_json(category="local_add"),  # a category other than the one asked for
    ],
)
def test_malformed_answers_are_recorded_schema_failures(content: str) -> None:
    with ScriptedLLMServer([Reply(content)]) as server, pytest.raises(ToolError) as err:
        plan_with(server)
    assert err.value.kind == "llm_schema"


def test_429_with_retry_after_then_success() -> None:
    replies = [Reply(status=429, headers={"Retry-After": "0.2"}), Reply(plan_json())]
    with ScriptedLLMServer(replies) as server:
        started = time.monotonic()
        answer, _ = plan_with(server)
    assert answer.category == "global_style" and len(server.requests) == 2
    assert time.monotonic() - started >= 0.2  # the server's Retry-After was honoured


def test_5xx_is_retried_then_succeeds() -> None:
    with ScriptedLLMServer([Reply(status=503), Reply(status=500), Reply(plan_json())]) as server:
        answer, _ = plan_with(server)
    assert answer.instruction and len(server.requests) == 3


def test_timeouts_exhaust_retries_into_a_recorded_failure() -> None:
    with ScriptedLLMServer([Reply(plan_json(), delay_s=1.0)]) as server, pytest.raises(ToolError) as err:
        plan_with(server, timeout_s=0.2)
    assert err.value.kind == "backend_unavailable" and server.url in err.value.detail
    assert len(server.requests) == 3


def test_refused_connection_is_a_recorded_failure() -> None:
    server = ScriptedLLMServer([Reply(plan_json())])  # never started: nothing listens on the port
    server.httpd.server_close()
    with pytest.raises(ToolError) as err:
        plan_with(server, timeout_s=0.5)
    assert err.value.kind == "backend_unavailable"


def test_rewrite_sends_the_judges_feedback() -> None:
    with ScriptedLLMServer([Reply(plan_json("Make it a watercolour."))]) as server:
        answer, ctx = plan_with(server, feedback="- edit_strength: scored 1.0", previous_instruction="Tint it.")
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert "edit_strength: scored 1.0" in user and "Tint it." in user
    assert ctx.rendered[1].name == "rewrite_instruction.user.j2"
