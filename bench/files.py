"""Writing bench outputs whole: under a temporary name, then renamed, so a
reader (or a crash) never leaves half a JSON, CSV, profile or figure behind."""

from __future__ import annotations

from pathlib import Path

from thinkling.runtime.files import atomic_path, write_text_atomic

__all__ = ["save_figure", "write_text_atomic"]


def save_figure(fig, out: str | Path) -> None:
    """Write a matplotlib figure under a temporary name, then rename (never half-written)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
