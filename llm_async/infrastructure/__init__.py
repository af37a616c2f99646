"""Infrastructure: adapters to the outside world (HTTP transports, wire decoders, backends)."""
