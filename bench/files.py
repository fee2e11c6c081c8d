"""Writing bench outputs whole: under a temporary name, then renamed, so a
reader (or a crash) never leaves half a JSON, CSV, profile or figure behind."""

from __future__ import annotations

from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def save_figure(fig, out: str | Path) -> None:
    """Write a matplotlib figure under a temporary name, then rename (never half-written)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = Path(out).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
