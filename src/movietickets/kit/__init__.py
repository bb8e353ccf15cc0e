"""Building blocks with no business rule in them: time, addresses, phone numbers, batching."""
