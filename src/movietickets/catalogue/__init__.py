"""The catalogue: movies (showings), their seats, and the cached public listing."""
