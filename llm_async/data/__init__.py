"""Data files shipped with the package (the pricing catalogue, ``pricing.json``)."""
