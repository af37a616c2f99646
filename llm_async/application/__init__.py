"""Application layer: the policies (retry, circuit breaker, limits, cost) and their layers."""
