"""An OpenAI chat API behind a mocked httpx transport, for budget tests: the real ``openai``
client sends real requests, which are counted and answered with the usage a test chooses.

Each answer reports ``input_tokens`` input tokens (at most the request's bound: by default a
quarter of its text's bytes) and ``output_tokens`` output tokens (by default the request's
``max_tokens``), so the call's actual cost is at or under what the SDK reserved for it. A
``latency`` (seconds, or a callable drawing them) delays each answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai

MODEL = "gpt-4o-mini"


class FakeLLM:
    """Answers ``POST /v1/chat/completions``; ``requests`` counts what reached it."""

    def __init__(
        self,
        *,
        output_tokens: Callable[[dict[str, Any]], int] | None = None,
        latency: Callable[[], float] | float = 0.0,
    ) -> None:
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.output_tokens = output_tokens or (lambda body: int(body.get("max_tokens") or 16))
        self.latency = latency
        self._lock = threading.Lock()

    def answer(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
        prompt = sum(len(str(message.get("content", ""))) for message in body["messages"])
        usage = {
            "prompt_tokens": max(1, prompt // 4),
            "completion_tokens": self.output_tokens(body),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-budget",
                "object": "chat.completion",
                "created": 1741570283,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok", "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
        )

    def delay(self) -> float:
        return self.latency() if callable(self.latency) else self.latency

    def client(self) -> openai.OpenAI:
        def handle(request: httpx.Request) -> httpx.Response:
            time.sleep(self.delay())
            return self.answer(request)

        return openai.OpenAI(
            api_key="test",
            base_url="http://llm.test/v1",
            http_client=httpx.Client(transport=httpx.MockTransport(handle)),
            max_retries=0,
        )

    def async_client(self) -> openai.AsyncOpenAI:
        async def handle(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(self.delay())
            return self.answer(request)

        return openai.AsyncOpenAI(
            api_key="test",
            base_url="http://llm.test/v1",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
            max_retries=0,
        )


def ask(
    client: openai.OpenAI, max_tokens: int = 100, text: str = "hello", model: str = MODEL
) -> Any:
    """One chat call."""
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens
    )
