"""The shared state of one embedded provider server.

The chat handler, the batch endpoints and the control endpoints all read and change one
:class:`ServerState`: the reply generator, the fault queue and its seeded RNG, the content
scripts, the counters, the
recorded requests and the rate-limit window.  Keeping it in one object lets each of those
modules depend on the state rather than on the server (and the server on them).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ._content import Script, ScriptQueue
from ._counters import Counters, RateLimitWindow, RecordedRequest
from ._faults import Fault, FaultQueue
from ._replies import ReplyGenerator

__all__ = ["ServerState"]


@dataclass(slots=True, eq=False)
class ServerState:
    """Everything one server remembers between requests."""

    seed: int
    require_api_key: str | None
    generator: ReplyGenerator
    rate_window: RateLimitWindow
    requests: deque[RecordedRequest]
    faults: FaultQueue = field(default_factory=FaultQueue)
    scripts: ScriptQueue = field(default_factory=ScriptQueue)
    counters: Counters = field(default_factory=Counters)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def select_fault(self, *, model: str | None, path: str, stream: bool,
                     accept: Callable[[Fault], bool] | None = None) -> Fault | None:
        """The fault to apply to a request (counted as applied), or ``None``; ``accept``
        narrows which faults may apply."""
        if not self.faults:
            return None
        fault = self.faults.select(model=model, path=path, stream=stream, rng=self.rng,
                                   accept=accept)
        if fault is not None:
            self.counters.faults_applied += 1
        return fault

    def select_script(self, *, model: str | None, path: str, stream: bool) -> Script | None:
        """The content script to apply to a request, or ``None``."""
        if not len(self.scripts):
            return None
        return self.scripts.select(model=model, path=path, stream=stream)

    def reset(self) -> None:
        """Clear counters, recorded requests, faults, prompt-cache memory and the rate window,
        and reseed the fault RNG."""
        self.faults.clear()
        self.scripts.clear()
        self.rng.seed(self.seed)
        self.generator.reset()
        self.rate_window.reset()
        self.requests.clear()
        self.counters.reset()
