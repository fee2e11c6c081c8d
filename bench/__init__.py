"""thinkling bench (filled by its issue)."""
