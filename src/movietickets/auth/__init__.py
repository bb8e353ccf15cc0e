"""Admin accounts: passwords, signed tokens, and the dependencies that require them."""
