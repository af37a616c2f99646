"""Rolling-window call statistics in bounded memory: what the dashboard's numbers are made of.

Time is cut into buckets of ``resolution`` seconds covering the last ``window`` seconds. Memory
is bounded: at most ``window / resolution`` buckets, each with at most ``max_keys`` names per
dimension (model, provider, operation; further names fold into ``"_other"``), and latencies kept
as relative-error sketches (1 % accuracy) instead of lists.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .._clock import Clock, system_clock
from ..errors import InvalidRequestError

__all__ = ["CallRecord", "RollingStats", "Status"]

Status = Literal["ok", "error", "cancelled"]

# -- latency sketch ---------------------------------------------------------------------------
#
# A value v > 0 falls in bucket ceil(log_gamma(v)); every value of a bucket is within ALPHA of
# the bucket's representative value, so quantiles have a relative error of at most ALPHA. Buckets
# are counts in a dict, merged by addition: a sketch is small, mergeable and bounded.

ALPHA = 0.01
_GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
_TINY = 1e-6  # seconds; anything at or below counts as zero
_ZERO = -(10**6)


def _sketch_index(seconds: float) -> int:
    return _ZERO if seconds <= _TINY else math.ceil(math.log(seconds) / _LOG_GAMMA)


def _sketch_quantiles(sketch: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    total = sum(sketch.values())
    if total == 0:
        return [None for _ in qs]
    items = sorted(sketch.items())
    out: list[float | None] = []
    for q in qs:
        rank = max(0, math.ceil(q * total) - 1)  # nearest rank, 0-based
        seen = 0
        value = 0.0
        for index, count in items:
            seen += count
            if seen > rank:
                value = 0.0 if index == _ZERO else 2.0 * _GAMMA**index / (_GAMMA + 1.0)
                break
        out.append(value)
    return out


@dataclass(slots=True)
class CallRecord:
    """One finished call or operation, as the tracing layer and the facade report it.

    ``status`` is ``"ok"``, ``"error"`` or ``"cancelled"`` (the caller cancelled it; not counted
    as an error). ``duration`` and ``time_to_first_chunk`` are in seconds. ``error_type`` is the
    root cause of a failure (a breaker rejection counts under the failure behind it, and in
    ``rejections``). ``cost`` is ``None`` when unknown; ``unpriced`` says the cost layer ran but
    the model has no price. ``prompt`` and ``completion`` are set only when content capture is
    on (the recent-calls list shows them).
    """

    operation: str = "chat"
    model: str | None = None
    provider: str | None = None
    duration: float = 0.0
    status: Status = "ok"
    error_type: str | None = None
    time_to_first_chunk: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal | float | None = None
    cache_hit: bool = False
    retries: int = 0
    dedup_joined: bool = False
    fallbacks: int = 0
    rejections: int = 0
    stream: bool = False
    unpriced: bool = False
    call_id: str | None = None
    prompt: str | None = None
    completion: str | None = None


class _Agg:
    """Aggregates of one name (or of everything) in one time bucket."""

    __slots__ = (
        "cache_hits",
        "cancelled",
        "cost",
        "count",
        "dedup_joins",
        "duration_sum",
        "durations",
        "error_types",
        "errors",
        "fallbacks",
        "input_tokens",
        "output_tokens",
        "priced",
        "rejections",
        "retries",
        "streams",
        "ttfc",
        "ttfc_count",
        "ttfc_sum",
        "unpriced",
    )

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.cancelled = 0
        self.duration_sum = 0.0
        self.durations: dict[int, int] = {}
        self.ttfc_count = 0
        self.ttfc_sum = 0.0
        self.ttfc: dict[int, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = Decimal(0)
        self.priced = 0
        self.unpriced = 0
        self.cache_hits = 0
        self.retries = 0
        self.dedup_joins = 0
        self.fallbacks = 0
        self.rejections = 0
        self.streams = 0
        self.error_types: dict[str, int] | None = None

    def add(self, rec: CallRecord, duration_index: int, ttfc_index: int | None,
            cost: Decimal | None) -> None:
        """Count ``rec`` (its sketch indexes and Decimal cost are computed once, by the caller)."""
        self.count += 1
        status = rec.status
        if status != "ok":
            if status == "error":
                self.errors += 1
                etype = rec.error_type or "_OTHER"
                types = self.error_types
                if types is None:
                    types = self.error_types = {}
                types[etype] = types.get(etype, 0) + 1
            else:
                self.cancelled += 1
        self.duration_sum += rec.duration
        durations = self.durations
        durations[duration_index] = durations.get(duration_index, 0) + 1
        if ttfc_index is not None:
            self.ttfc_count += 1
            self.ttfc_sum += rec.time_to_first_chunk or 0.0
            ttfc = self.ttfc
            ttfc[ttfc_index] = ttfc.get(ttfc_index, 0) + 1
        self.input_tokens += rec.input_tokens
        self.output_tokens += rec.output_tokens
        if cost is not None:
            self.cost += cost
            self.priced += 1
        elif rec.unpriced:
            self.unpriced += 1
        if rec.cache_hit:
            self.cache_hits += 1
        if rec.stream:
            self.streams += 1
        if rec.dedup_joined:
            self.dedup_joins += 1
        if rec.retries or rec.fallbacks or rec.rejections:
            self.retries += rec.retries
            self.fallbacks += rec.fallbacks
            self.rejections += rec.rejections

    def merge(self, other: _Agg) -> None:
        for name in ("count", "errors", "cancelled", "duration_sum", "ttfc_count", "ttfc_sum",
                     "input_tokens", "output_tokens", "cost", "priced", "unpriced", "cache_hits",
                     "retries",
                     "dedup_joins", "fallbacks", "rejections", "streams"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.durations, other.durations), (self.ttfc, other.ttfc)):
            for index, count in theirs.items():
                mine[index] = mine.get(index, 0) + count
        if other.error_types:
            types = self.error_types
            if types is None:
                types = self.error_types = {}
            for etype, count in other.error_types.items():
                types[etype] = types.get(etype, 0) + count

    def summary(self, seconds: float) -> dict[str, Any]:
        """The JSON-ready statistics of this aggregate over ``seconds`` of wall time."""
        p50, p95, p99 = _sketch_quantiles(self.durations, (0.5, 0.95, 0.99))
        t50, t95 = _sketch_quantiles(self.ttfc, (0.5, 0.95))
        settled = self.count - self.cancelled
        return {
            "total_requests": self.count,
            "successful_requests": self.count - self.errors - self.cancelled,
            "failed_requests": self.errors,
            "cancelled_requests": self.cancelled,
            "error_rate": self.errors / settled if settled else 0.0,
            "requests_per_second": self.count / seconds if seconds > 0 else 0.0,
            "avg_duration_ms": _ms(self.duration_sum / self.count) if self.count else None,
            "p50_duration_ms": _ms(p50),
            "p95_duration_ms": _ms(p95),
            "p99_duration_ms": _ms(p99),
            "avg_time_to_first_chunk_ms": (_ms(self.ttfc_sum / self.ttfc_count)
                                           if self.ttfc_count else None),
            "p50_time_to_first_chunk_ms": _ms(t50),
            "p95_time_to_first_chunk_ms": _ms(t95),
            "streams": self.streams,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "total_cost": float(self.cost),
            "priced_requests": self.priced,
            "unpriced_requests": self.unpriced,
            "cache_hits": self.cache_hits,
            "cache_hit_rate": self.cache_hits / self.count if self.count else 0.0,
            "retries": self.retries,
            "dedup_joins": self.dedup_joins,
            "fallbacks": self.fallbacks,
            "circuit_rejections": self.rejections,
            "errors_by_type": dict(sorted((self.error_types or {}).items())),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


_Key = tuple[str, str]
_OVERALL: _Key = ("all", "")
_DIMENSIONS = ("model", "provider", "operation")
_DIM_POSITION = {"model": 0, "provider": 1, "operation": 2}
_Combo = tuple[str | None, str | None, str]


class RollingStats:
    """Per-call statistics over a rolling time window, in bounded memory.

    Time is cut into buckets of ``resolution`` seconds; only the last ``window`` seconds are
    kept. Each bucket aggregates everything, and each model, provider and operation name (at most
    ``max_keys`` names per dimension and bucket; more fold into ``"_other"``).
    """

    def __init__(self, *, window: float = 300.0, resolution: float = 5.0, max_keys: int = 64,
                 clock: Clock = system_clock) -> None:
        if not resolution > 0 or not window >= resolution:
            raise InvalidRequestError("need window >= resolution > 0", field="window")
        if max_keys < 1:
            raise InvalidRequestError("max_keys must be >= 1", field="max_keys")
        self.window = float(window)
        self.resolution = float(resolution)
        self.max_keys = max_keys
        self.clock = clock
        self.buckets = math.ceil(window / resolution)
        # Per bucket: (index, aggregates by key, names per dimension, combos). A call counts
        # once, in the aggregate of its (model, provider, operation) combo, which remembers
        # the keys (names folded as in ``_keys``) it is merged into when read; beyond
        # ``4 * max_keys`` combos, calls are added to the keyed aggregates directly.
        self._data: deque[tuple[int, dict[_Key, _Agg], dict[str, int],
                                dict[_Combo, tuple[_Agg, list[_Key]]]]] = deque()
        self._max_combos = 4 * max_keys
        self._lock = threading.Lock()

    def _evict(self, index: int) -> None:
        data = self._data
        oldest = index - self.buckets + 1
        while data and data[0][0] < oldest:
            data.popleft()

    def record(self, rec: CallRecord) -> None:
        """Add one call to the current bucket."""
        index = math.floor(self.clock.now() / self.resolution)
        duration = rec.duration  # _sketch_index, inlined (once per call)
        duration_index = (_ZERO if duration <= _TINY
                          else math.ceil(math.log(duration) / _LOG_GAMMA))
        ttfc = rec.time_to_first_chunk
        ttfc_index = None if ttfc is None else _sketch_index(ttfc)
        cost = rec.cost
        if cost is not None and not isinstance(cost, Decimal):
            cost = Decimal(str(cost))
        combo = (rec.model, rec.provider, rec.operation)
        with self._lock:
            data = self._data
            if not data or data[-1][0] != index:
                self._evict(index)
                data.append((index, {}, {}, {}))
            _, aggs, names, combos = data[-1]
            entry = combos.get(combo)
            if entry is None:
                keys = self._keys(aggs, names, combo)
                if len(combos) >= self._max_combos:
                    for key in keys:
                        agg = aggs.get(key)
                        if agg is None:
                            agg = aggs[key] = _Agg()
                        agg.add(rec, duration_index, ttfc_index, cost)
                    return
                entry = combos[combo] = (_Agg(), keys)
            entry[0].add(rec, duration_index, ttfc_index, cost)

    def _keys(self, aggs: dict[_Key, _Agg], names: dict[str, int],
              combo: _Combo) -> list[_Key]:
        """The keys a call of ``combo`` (model, provider, operation) counts under in a bucket;
        a name beyond ``max_keys`` in its dimension folds into ``"_other"``. Names are only
        ever added to a bucket, so the answer holds for the rest of the bucket."""
        model, provider, operation = combo
        keys: list[_Key] = []
        for key in (_OVERALL, ("model", model), ("provider", provider),
                    ("operation", operation)):
            if key[1] is None:
                continue
            dim = key[0]
            if dim != "all" and key not in aggs and not self._known(combo, dim, key[1]):
                if names.get(dim, 0) >= self.max_keys:
                    key = (dim, "_other")
                else:
                    names[dim] = names.get(dim, 0) + 1
            keys.append(key)  # type: ignore[arg-type]
        return keys

    def _known(self, combo: _Combo, dim: str, name: str) -> bool:
        """Whether ``name`` already counts in ``dim`` of the current bucket through a combo."""
        position = _DIM_POSITION[dim]
        for other, (_, keys) in self._data[-1][3].items():
            if other[position] == name and (dim, name) in keys:
                return True
        return False

    @staticmethod
    def _bucket_aggs(aggs: dict[_Key, _Agg],
                     combos: dict[_Combo, tuple[_Agg, list[_Key]]]) -> dict[_Key, _Agg]:
        """A bucket's aggregates by key: its keyed ones plus every combo merged in (fresh
        objects; the stored ones are left as they are)."""
        out: dict[_Key, _Agg] = {}
        for key, part in aggs.items():
            out[key] = total = _Agg()
            total.merge(part)
        for part, keys in combos.values():
            for key in keys:
                found = out.get(key)
                if found is None:
                    found = out[key] = _Agg()
                found.merge(part)
        return out

    @property
    def live_buckets(self) -> int:
        """Time buckets held now (at most :attr:`buckets`)."""
        return len(self._data)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()

    def snapshot(self) -> dict[str, Any]:
        """Overall, per-dimension and per-bucket statistics of the live window."""
        now = self.clock.now()
        index = math.floor(now / self.resolution)
        with self._lock:
            self._evict(index)
            buckets = [(i, self._bucket_aggs(aggs, combos)) for i, aggs, _, combos in self._data]
            merged: dict[_Key, _Agg] = {}
            for _, aggs in buckets:
                for key, part in aggs.items():
                    total = merged.get(key)
                    if total is None:
                        total = merged[key] = _Agg()
                    total.merge(part)
            per_bucket = {i: aggs.get(_OVERALL) for i, aggs in buckets}
            per_model = {i: {k[1]: a for k, a in aggs.items() if k[0] == "model"}
                         for i, aggs in buckets}
            # Seconds covered: from the oldest live bucket (or the window) up to now.
            first = buckets[0][0] if buckets else index
            covered = max(self.resolution, now - first * self.resolution)
            covered = min(covered, self.window)
            out = (merged.get(_OVERALL) or _Agg()).summary(covered)
            for dim in _DIMENSIONS:
                out[f"by_{dim}"] = {
                    name: agg.summary(covered)
                    for (kind, name), agg in sorted(merged.items()) if kind == dim
                }
            series = []
            wall_offset = time.time() - now
            for i in range(index - self.buckets + 1, index + 1):
                agg = per_bucket.get(i)
                point: dict[str, Any] = {"t": round((i * self.resolution) + wall_offset, 3)}
                if agg is None:
                    point.update(requests=0, errors=0, requests_per_second=0.0,
                                 avg_duration_ms=None, p95_duration_ms=None, tokens=0,
                                 cost=0.0, cost_by_model={})
                else:
                    (p95,) = _sketch_quantiles(agg.durations, (0.95,))
                    point.update(
                        requests=agg.count, errors=agg.errors,
                        requests_per_second=agg.count / self.resolution,
                        avg_duration_ms=_ms(agg.duration_sum / agg.count),
                        p95_duration_ms=_ms(p95),
                        tokens=agg.input_tokens + agg.output_tokens, cost=float(agg.cost),
                        cost_by_model={m: float(a.cost) for m, a in per_model[i].items()},
                    )
                series.append(point)
            out["series"] = series
        return out

    def __repr__(self) -> str:
        return (f"RollingStats(window={self.window:g}s, resolution={self.resolution:g}s, "
                f"live_buckets={len(self._data)})")
