"""Tickets: reading one, and who may see the buyer's name and phone number."""
