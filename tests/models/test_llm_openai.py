"""The OpenAI-compatible planner against a real HTTP server on 127.0.0.1: transport retries, the deadline,
structured output and its fallbacks, and the usage figures of each call."""

from __future__ import annotations

import time

import pytest
import tenacity

from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from models.llm_openai import EndpointUnavailableError, OpenAIPlanner
from models.protocols import Correction, PlanRequest
from tools.plan_instruction import answer_schema

SCHEMA = answer_schema(["global_style"])  # the one category the planner is asked for


def planner_for(server: ScriptedLLMServer, **options: object) -> OpenAIPlanner:
    settings = {"request_timeout_s": 5.0, "max_attempts": 3, **options}
    return OpenAIPlanner(base_url=server.url, model="tiny-planner", api_key_env="DITTO_TEST_KEY", **settings)  # type: ignore[arg-type]


def request(**changes: object) -> PlanRequest:
    fields = {
        "caption": "A rabbit in a meadow.",
        "system_prompt": "You write edit instructions.",
        "user_prompt": "Source video: A rabbit in a meadow.",
        "vocabulary": {},
        "avoid": [],
        "clip_seed": 1,
        "slot": 0,
        "answer_schema": SCHEMA,
        **changes,
    }
    return PlanRequest(**fields)  # type: ignore[arg-type]


def test_asks_for_the_answer_schema_and_reports_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DITTO_TEST_KEY", "sk-secret-123")
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        reply = planner_for(server).plan(request())
    body = server.requests[0]["body"]
    assert body["model"] == "tiny-planner"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan_answer", "schema": SCHEMA, "strict": True},
    }
    assert SCHEMA["properties"]["category"]["enum"] == ["global_style"]
    assert {k.lower(): v for k, v in server.requests[0]["headers"].items()}["authorization"] == "Bearer sk-secret-123"
    assert reply.text == plan_json()
    assert reply.usage["response_format"] == "json_schema" and reply.usage["structured_output_refused"] == []
    assert reply.usage["prompt_tokens"] == 4 + 7 and reply.usage["completion_tokens"] == len(plan_json().split())
    assert reply.usage["transport_retries"] == 0 and reply.usage["latency_s"] >= 0


def test_refused_structured_output_falls_back_to_json_mode_and_is_remembered() -> None:
    with ScriptedLLMServer([Reply(plan_json())], refuse_formats=("json_schema",)) as server:
        planner = planner_for(server)
        first, second = planner.plan(request()), planner.plan(request())
    sent = [r["body"]["response_format"]["type"] for r in server.requests]
    assert sent == ["json_schema", "json_object", "json_object"]  # refused once, never asked again
    assert first.text == plan_json() and first.usage["response_format"] == "json_object"
    assert first.usage["structured_output_refused"] == ["json_schema: HTTP 400"]
    assert second.usage["structured_output_refused"] == []


def test_endpoint_without_any_json_mode_is_asked_for_plain_text() -> None:
    with ScriptedLLMServer([Reply("Sure! " + plan_json())], refuse_formats=("json_schema", "json_object")) as server:
        reply = planner_for(server).plan(request())
    assert "response_format" not in server.requests[-1]["body"] and len(server.requests) == 3
    assert reply.usage["response_format"] == "text" and len(reply.usage["structured_output_refused"]) == 2


def test_structured_output_can_be_turned_off_in_config() -> None:
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        reply = planner_for(server, structured_output=False).plan(request())
    assert server.requests[0]["body"]["response_format"] == {"type": "json_object"}
    assert reply.usage["response_format"] == "json_object"


def test_a_400_not_about_the_format_is_a_failure_not_a_fallback() -> None:
    with ScriptedLLMServer([Reply(status=400, content="model 'tiny-planner' does not exist")]) as server:
        with pytest.raises(EndpointUnavailableError, match="HTTP 400"):
            planner_for(server).plan(request())
    assert len(server.requests) == 1


def test_corrections_continue_the_conversation() -> None:
    correction = Correction(answer="not json", reask="Your answer could not be used: it is not JSON.")
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        planner_for(server).plan(request(corrections=(correction,)))
    roles = [(m["role"], m["content"]) for m in server.requests[0]["body"]["messages"]]
    assert roles[2:] == [("assistant", "not json"), ("user", correction.reask)]


def test_429_with_retry_after_then_success_counts_one_retry() -> None:
    replies = [Reply(status=429, headers={"Retry-After": "0.2"}), Reply(plan_json())]
    with ScriptedLLMServer(replies) as server:
        started = time.monotonic()
        reply = planner_for(server).plan(request())
    assert time.monotonic() - started >= 0.2  # the server's Retry-After was honoured
    assert reply.usage["transport_retries"] == 1 and len(server.requests) == 2


def test_5xx_is_retried_then_succeeds() -> None:
    with ScriptedLLMServer([Reply(status=503), Reply(status=500), Reply(plan_json())]) as server:
        reply = planner_for(server).plan(request())
    assert reply.usage["transport_retries"] == 2 and len(server.requests) == 3


def test_one_deadline_bounds_every_retry_of_a_hung_endpoint() -> None:
    with ScriptedLLMServer([Reply(plan_json(), delay_s=3.0)]) as server:
        planner = planner_for(server, request_timeout_s=0.4, deadline_s=1.0, max_attempts=20)
        with pytest.raises(EndpointUnavailableError, match="deadline 1 s") as err:
            planner.plan(request())
    # Every try times out (0.4 s of the server's 3): the deadline, not the 20 attempts, ended them.
    assert server.url in str(err.value) and 2 <= len(server.requests) < 20
    assert err.value.usage["transport_retries"] == len(server.requests) - 1


def test_a_retry_after_past_the_deadline_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(tenacity.nap.time, "sleep", waits.append)  # tenacity's waits between tries (and the server's 0)
    with ScriptedLLMServer([Reply(status=429, headers={"Retry-After": "30"})]) as server:
        with pytest.raises(EndpointUnavailableError):
            planner_for(server, deadline_s=2.0).plan(request())
    assert max(waits, default=0.0) == 0.0 and len(server.requests) == 1  # no wait for the Retry-After was begun


def test_refused_connection_is_unavailable() -> None:
    server = ScriptedLLMServer([Reply(plan_json())])  # never started: nothing listens on the port
    server.httpd.server_close()
    with pytest.raises(EndpointUnavailableError, match="no answer in 3 tries"):
        planner_for(server, deadline_s=5.0).plan(request())
