"""Demo traffic for the dashboard: chat calls through a client with the default pipeline, so
retries, breakers, costs and failures show up on the page.

Used by ``llm-async dashboard --demo`` against the embedded provider server; any
OpenAI-compatible server on loopback works.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from ...errors import LLMError
from ..facade import Observability

__all__ = ["DEMO_MODELS", "DEMO_PROJECTS", "DEMO_USERS", "run_demo_traffic"]

#: Models the demo traffic spreads over, with their share of the calls.
DEMO_MODELS: tuple[tuple[str, float], ...] = (
    ("gpt-4o-mini", 0.6), ("gpt-4o", 0.3), ("o3-mini", 0.1),
)
#: Users and projects the demo calls are attributed to (spend per user and project).
DEMO_USERS: tuple[str, ...] = ("alice", "bob", "carol")
DEMO_PROJECTS: tuple[str, ...] = ("search", "support")


async def run_demo_traffic(base_url: str, *, observability: Observability | None = None,
                           rate: float = 5.0, calls: int | None = None,
                           seed: int = 0, cost_manager: Any = None) -> int:
    """Send demo chat calls (a quarter streamed) to an OpenAI-compatible server at ``base_url``,
    through a client with the default pipeline reporting to ``observability`` and recording
    costs to ``cost_manager`` (default: the process-wide one).

    ``rate`` is calls per second; ``calls`` stops after that many (default: until cancelled).
    Errors the server injects are counted, not raised. Returns the number of calls made.
    """
    from ...client import AsyncLLMClient

    rng = random.Random(seed)
    models = [m for m, _ in DEMO_MODELS]
    weights = [w for _, w in DEMO_MODELS]
    made = 0
    options: dict[str, Any] = {} if cost_manager is None else {"cost_manager": cost_manager}
    async with AsyncLLMClient(provider="openai", api_key="sk-demo-key", base_url=base_url,
                              observability=observability, **options) as client:
        while calls is None or made < calls:
            model = rng.choices(models, weights)[0]
            messages = [{"role": "user", "content": f"demo question {made}"}]
            user, project = rng.choice(DEMO_USERS), rng.choice(DEMO_PROJECTS)
            try:
                if rng.random() < 0.25:
                    async with client.stream(model=model, messages=messages, user_id=user,
                                             project_id=project) as stream:
                        async for _ in stream:
                            pass
                else:
                    await client.chat(model=model, messages=messages, user_id=user,
                                      project_id=project)
            except LLMError:
                pass
            made += 1
            await asyncio.sleep(rng.expovariate(rate))
    return made
