"""Pydantic request and response bodies, spelled as the original API spells them."""
