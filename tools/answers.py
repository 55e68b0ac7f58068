"""Asking a model for an answer that must validate, the same way for the captioner, the planner and the judges:
each call's usage kept for the trace (and the charge of an endpoint priced per token), an unreachable model
turned into backend_unavailable (which the run counts toward an outage), and an answer that fails validation
asked again with its problems named, as one more turn of the conversation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from models.protocols import BackendUnavailableError, Correction, ModelReply
from tools.base import ToolContext, ToolError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class AnswerError(ValueError):
    """An answer that cannot be used; `problems` are told to the model when it is asked again."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_json_object(raw: str) -> dict:
    """The first JSON object in a model's answer (models wrap JSON in prose or code fences)."""
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0:
        raise ValueError(f"no JSON object in the answer: {raw[:200]!r}")
    if end < start:
        raise ValueError("the JSON object in the answer is not closed (cut off?)")
    value = json.loads(raw[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the answer is JSON but not an object")
    return value


def parsed(model: type[M], raw: str) -> M:
    """The answer parsed by its model; AnswerError names the fields at fault (not just "1 validation error")."""
    try:
        return model.model_validate(parse_json_object(raw))
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in err.errors()[:3]]
        raise AnswerError(problems) from err
    except ValueError as err:
        raise AnswerError([str(err).splitlines()[0]]) from err


def record_usage(ctx: ToolContext, reply: ModelReply) -> None:
    """Each model call's figures, and their totals, into the call's trace."""
    if not reply.usage:
        return  # a backend that calls no model
    ctx.usage.setdefault("calls", []).append(reply.usage)
    for key in ("latency_s", "prompt_tokens", "completion_tokens", "transport_retries"):
        ctx.usage[key] = ctx.usage.get(key, 0) + (reply.usage.get(key) or 0)


def reply_of(ask: Callable[[], ModelReply], ctx: ToolContext, field: str) -> ModelReply:
    """The model's reply, its usage recorded; a model out of reach is backend_unavailable naming `field` (the
    usage of the tries that failed recorded too: an endpoint priced per token did that work)."""
    try:
        reply = ask()
    except BackendUnavailableError as err:
        if err.usage:
            record_usage(ctx, ModelReply("", err.usage))
        raise ToolError("backend_unavailable", str(err), field=field) from err
    record_usage(ctx, reply)
    return reply


def ask_until_valid(
    ask: Callable[[tuple[Correction, ...]], ModelReply],
    validate: Callable[[str], T],
    reasks: int,
    ctx: ToolContext,
    reask_message: Callable[[list[str]], str],
) -> T:
    """The first answer `validate` accepts. An answer it refuses (AnswerError) is kept in the trace and asked
    again `reasks` times at most, each time with the earlier answers and what was wrong with them
    (`reask_message`, a rendered template); the last refusal is raised."""
    corrections: tuple[Correction, ...] = ()
    for n in range(reasks + 1):
        reply = ask(corrections)
        try:
            return validate(reply.text)
        except AnswerError as err:
            ctx.usage.setdefault("rejected", []).append({"answer": reply.text[:500], "problems": err.problems})
            if n == reasks:
                raise
            corrections = (*corrections, Correction(answer=reply.text, reask=reask_message(err.problems)))
    raise AssertionError("unreachable: the last refusal is raised")
