"""A1111-compatible HTTP API under /sdapi/v1 (REFERENCE section 5)."""
