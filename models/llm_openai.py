"""An OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, OpenAI) as the instruction planner.

Transport faults (timeouts, refused connections, 429, 5xx) are retried here with tenacity and nowhere
else; the openai client's own retries are off so the two never stack. A 429's Retry-After is honoured."""

from __future__ import annotations

import logging
import os

import openai
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from models.protocols import PlanRequest

log = logging.getLogger(__name__)

TRANSIENT = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
MAX_RETRY_AFTER_S = 60.0  # a server asking for longer is treated as down, not waited on


class EndpointUnavailableError(RuntimeError):
    """The endpoint kept failing after every retry; the message names it and the last error."""


def _wait(state: RetryCallState) -> float:
    err = state.outcome.exception() if state.outcome else None
    if isinstance(err, openai.RateLimitError):
        header = err.response.headers.get("retry-after")
        try:
            return min(float(header), MAX_RETRY_AFTER_S)
        except (TypeError, ValueError):
            pass
    return wait_exponential(multiplier=0.5, max=20)(state)


class OpenAIPlanner:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_attempts: int = 5,
        temperature: float = 0.9,
    ) -> None:
        # The key is read from the environment here and kept only inside the client: it is never part of
        # the config, a trace or a log.
        api_key = os.environ.get(api_key_env)
        self.base_url, self.model, self.temperature = base_url, model, temperature
        self.spec_id = f"openai-chat:{model}"  # the endpoint URL and key are not part of any record
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=0
        )
        self._complete = retry(
            retry=retry_if_exception_type(TRANSIENT),
            stop=stop_after_attempt(max_attempts),
            wait=_wait,
            reraise=True,
        )(self._complete_once)

    def _complete_once(self, system: str, user: str, seed: int) -> str:
        reply = self._client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            response_format={"type": "json_object"},
            temperature=self.temperature,
            seed=seed,
        )
        return reply.choices[0].message.content or ""

    def plan(self, request: PlanRequest) -> str:
        try:
            return self._complete(request.system_prompt, request.user_prompt, request.clip_seed + request.slot)
        except TRANSIENT as err:
            raise EndpointUnavailableError(f"LLM endpoint {self.base_url} failed after retries: {err}") from err
        except openai.APIStatusError as err:
            raise EndpointUnavailableError(
                f"LLM endpoint {self.base_url} refused the request: HTTP {err.status_code}"
            ) from err
