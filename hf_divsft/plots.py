"""`divsft plot`: each metric against diversity level, one line per strategy, as one PNG."""

from __future__ import annotations

import json
from pathlib import Path

from .artifacts import staged_file
from .data import TEXT_COLUMNS
from .errors import DivsftError
from .metrics import METRICS

METRIC_LABELS = {
    "ngram_ratio": "n-gram ratio (mean n=1..4)",
    "embedding_distance": "embedding distance",
    "sequence_length": "length (tokens)",
    "compression_ratio": "compression ratio",
    "self_bleu": "Self-BLEU",
    "token_entropy": "token entropy (bits)",
}


def read_level_metrics(source: str | Path) -> tuple[str, list[dict]]:
    """(strategy, levels with metrics) from a build folder's manifest or a `divsft measure` report."""
    path = Path(source)
    report = path / "manifest.json" if path.is_dir() else path
    if not report.is_file():
        raise DivsftError(f"{source}: not a build folder (no manifest.json) or a metrics report")
    data = json.loads(report.read_text())
    levels = data.get("levels") or []
    if not levels or any("metrics" not in entry for entry in levels):
        raise DivsftError(f"{report}: has no per-level metrics; run `divsft measure {source} --out metrics.json`")
    return data["strategy"], sorted(levels, key=lambda entry: entry["level"])


def pyplot():
    """matplotlib's pyplot drawing to files only (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(sources: list[str | Path], out: str | Path) -> Path:
    """A grid with a row per component and a column per metric; x is the diversity level in percent."""
    plt = pyplot()
    runs = [read_level_metrics(source) for source in sources]
    fig, axes = plt.subplots(len(TEXT_COLUMNS), len(METRICS), figsize=(3.2 * len(METRICS), 3.0 * len(TEXT_COLUMNS)),
                             squeeze=False, constrained_layout=True)
    for row, component in enumerate(TEXT_COLUMNS):
        for col, metric in enumerate(METRICS):
            ax = axes[row][col]
            for strategy, levels in runs:
                points = [(e["level"], e["metrics"].get(component, {}).get(metric, {}).get("value")) for e in levels]
                points = [(x, y) for x, y in points if y is not None]
                ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=strategy)
            ax.set_title(f"{component}: {METRIC_LABELS[metric]}", fontsize=9)
            ax.set_xlabel("diversity level (%)", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    out = Path(out)
    with staged_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
