"""thinkling mobile_bridge (filled by its issue)."""
