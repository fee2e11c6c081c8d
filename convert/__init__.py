"""thinkling convert (filled by its issue)."""
