"""Domain layer: the ports (protocols) every adapter and layer implements."""
