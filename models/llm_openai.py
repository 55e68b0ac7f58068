"""An OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, OpenAI), and the instruction planner on it. The
captioner and judges on such an endpoint (models/vlm_openai.py) ask it the same way, through OpenAIChat.

Transport faults (timeouts, refused connections, 429, 5xx) are retried here with tenacity and nowhere
else; the openai client's own retries are off so the two never stack. A 429's Retry-After is honoured.
One deadline bounds a whole call, retries included, so a hung endpoint cannot hold an episode.

The endpoint is asked to decode under the answer's JSON schema (structured output): for the planner a plan,
or the answer that no edit of the asked category fits the clip, with its reason. An endpoint that refuses
that is asked for plain JSON mode, then for plain text; the refusal is remembered (not asked again) and
reported in the reply's usage."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import openai
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from models.protocols import BackendUnavailableError, Correction, ModelReply, PlanRequest

log = logging.getLogger(__name__)

TRANSIENT = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
# Ways of asking for JSON, most constrained first; "text" asks for nothing and parses the reply as it is.
RESPONSE_FORMATS = ("json_schema", "json_object", "text")
# A 400/422 whose message names the response format means "I cannot do that format", not "bad request".
FORMAT_REFUSAL = re.compile(r"response_format|json_schema|json_object|structured|guided", re.IGNORECASE)


class EndpointUnavailableError(BackendUnavailableError):
    """The endpoint kept failing until the deadline or the last retry; the message names it and the error."""


def _wait(state: RetryCallState) -> float:
    err = state.outcome.exception() if state.outcome else None
    if isinstance(err, openai.RateLimitError):
        try:
            return float(err.response.headers.get("retry-after"))
        except (TypeError, ValueError):
            pass
    return wait_exponential(multiplier=0.5, max=20)(state)


def _refused_format(err: openai.APIStatusError) -> bool:
    return err.status_code in (400, 422) and FORMAT_REFUSAL.search(str(err)) is not None


class OpenAIChat:
    """One OpenAI-compatible endpoint and one model there, asked for answers under a JSON schema. The key is read
    from the environment here and kept only inside the client: it is never part of the config, a trace or a log."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str,
        request_timeout_s: float,
        deadline_s: float,
        max_attempts: int,
        structured_output: bool,
    ) -> None:
        self.base_url, self.model = base_url, model
        self.request_timeout_s, self.deadline_s, self.max_attempts = request_timeout_s, deadline_s, max_attempts
        self.spec_id = self.identity(model)
        api_key = os.environ.get(api_key_env)
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0)
        # Formats this endpoint refused once; every later call skips them (a set add is atomic across threads).
        self._refused: set[str] = set() if structured_output else {"json_schema"}

    @staticmethod
    def identity(model: str, **_: Any) -> str:
        return f"openai-chat:{model}"  # the endpoint URL and key are not part of any record

    def complete(
        self,
        messages: list[dict[str, Any]],
        schema: dict[str, Any] | None,
        schema_name: str,
        temperature: float,
        seed: int | None = None,
    ) -> ModelReply:
        """The model's answer to the conversation, under `schema` where the endpoint takes one, and its usage.
        Raises EndpointUnavailableError when the endpoint gives no answer by the deadline or refuses the request."""
        deadline = time.monotonic() + self.deadline_s
        usage: dict[str, Any] = {"transport_retries": 0, "structured_output_refused": []}
        started = time.monotonic()
        wanted = RESPONSE_FORMATS if schema is not None else RESPONSE_FORMATS[1:]
        for fmt in [f for f in wanted if f not in self._refused]:
            usage["response_format"] = fmt
            extra: dict[str, Any] = {"seed": seed} if seed is not None else {}
            if fmt == "json_schema":
                format_schema = {"name": schema_name, "schema": schema, "strict": True}
                extra["response_format"] = {"type": "json_schema", "json_schema": format_schema}
            elif fmt == "json_object":
                extra["response_format"] = {"type": "json_object"}
            try:
                reply = self._create(messages, temperature, extra, deadline, usage)
            except openai.APIStatusError as err:
                if fmt != "text" and _refused_format(err):
                    self._refused.add(fmt)
                    usage["structured_output_refused"].append(f"{fmt}: HTTP {err.status_code}")
                    log.warning("endpoint refused a response format", extra={"format": fmt, "model": self.model})
                    continue
                raise EndpointUnavailableError(
                    f"LLM endpoint {self.base_url} refused the request: HTTP {err.status_code}",
                    self._ended(usage, started),
                ) from err
            except TRANSIENT as err:
                raise EndpointUnavailableError(
                    f"LLM endpoint {self.base_url} gave no answer in {usage['transport_retries'] + 1} tries "
                    f"(deadline {self.deadline_s:g} s): {err}",
                    self._ended(usage, started),
                ) from err
            tokens = reply.usage
            usage["prompt_tokens"] = tokens.prompt_tokens if tokens else None
            usage["completion_tokens"] = tokens.completion_tokens if tokens else None
            text = reply.choices[0].message.content if reply.choices else None  # no choice: an empty answer
            return ModelReply(text or "", self._ended(usage, started))
        raise AssertionError("unreachable: the text format is never refused")

    def _create(
        self,
        messages: list[dict[str, Any]],
        temperature: float,
        extra: dict[str, Any],
        deadline: float,
        usage: dict[str, Any],
    ) -> Any:
        def past_deadline(state: RetryCallState) -> bool:  # a wait that would end past the deadline is not begun
            return time.monotonic() + state.upcoming_sleep >= deadline

        retrying = Retrying(
            retry=retry_if_exception_type(TRANSIENT),
            stop=stop_after_attempt(self.max_attempts) | past_deadline,
            wait=_wait,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    usage["transport_retries"] += 1
                return self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=temperature,
                    timeout=max(0.01, min(self.request_timeout_s, deadline - time.monotonic())),
                    **extra,
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")

    @staticmethod
    def _ended(usage: dict[str, Any], started: float) -> dict[str, Any]:
        return {**usage, "latency_s": round(time.monotonic() - started, 3)}


def conversation(first: list[dict[str, Any]], corrections: tuple[Correction, ...]) -> list[dict[str, Any]]:
    """The first messages, then each earlier answer that failed validation and the re-ask that said why."""
    messages = list(first)
    for correction in corrections:
        messages += [
            {"role": "assistant", "content": correction.answer},
            {"role": "user", "content": correction.reask},
        ]
    return messages


class OpenAIPlanner:
    sees_frames = False  # the caption stands for the clip: not every endpoint takes images
    reads_prompts = True
    identity = staticmethod(OpenAIChat.identity)

    def __init__(
        self,
        base_url: str,
        model: str = "default",  # what a server that serves one model (vLLM, SGLang, llama.cpp) answers to
        api_key_env: str = "OPENAI_API_KEY",
        request_timeout_s: float = 30.0,  # one try; a 72B model writes this short JSON answer in a few seconds
        deadline_s: float = 60.0,  # all tries of one plan() together: a dead endpoint costs an episode a minute
        max_attempts: int = 5,
        temperature: float = 0.9,
        structured_output: bool = True,  # False: never ask for json_schema (an endpoint known to mishandle it)
    ) -> None:
        self.chat = OpenAIChat(
            base_url, model, api_key_env, request_timeout_s, deadline_s, max_attempts, structured_output
        )
        self.temperature, self.spec_id = temperature, self.chat.spec_id

    def plan(self, request: PlanRequest) -> ModelReply:
        first = [
            {"role": "system", "content": request.system_prompt},
            {"role": "user", "content": request.user_prompt},
        ]
        return self.chat.complete(
            conversation(first, request.corrections),
            request.answer_schema,
            "plan_answer",
            self.temperature,
            seed=request.clip_seed + request.slot,
        )
