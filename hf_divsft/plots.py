"""`divsft plot`: each metric against diversity level, one line per strategy, as one PNG."""

from __future__ import annotations

from pathlib import Path

from .artifacts import check_output, staged_file
from .config import PlotConfig
from .metrics import METRICS
from .strategies import COMPONENTS

SOFTWARE = "hf-divsft plot"  # written into the PNG, so an earlier plot is recognised as ours
PNG_WHAT = "an earlier `divsft plot` image"


def pyplot():
    """matplotlib's pyplot drawing to files only (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def is_plot(path: Path) -> bool:
    """A PNG whose text chunk names this command as its software."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"Software\x00" + SOFTWARE.encode() in head


def plot_metrics(config: PlotConfig) -> Path:
    """A grid with a row per component and a column per metric; x is the diversity level in percent."""
    from .measure import read_level_metrics

    out = check_output(config.out, overwrite=config.overwrite, owned=is_plot, what=PNG_WHAT,
                       inputs=config.sources)
    runs = [read_level_metrics(source) for source in config.sources]
    plt = pyplot()
    fig, axes = plt.subplots(len(COMPONENTS), len(METRICS),
                             figsize=(3.2 * len(METRICS), 3.0 * len(COMPONENTS)),
                             squeeze=False, constrained_layout=True)
    for row, component in enumerate(COMPONENTS):
        for col, metric in enumerate(METRICS.values()):
            ax = axes[row][col]
            for strategy, levels in runs:
                points = [(e.level, e.metrics.get(component, {}).get(metric.name)) for e in levels]
                points = [(x, m.value) for x, m in points if m is not None and m.value is not None]
                ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=strategy)
            ax.set_title(f"{component}: {metric.axis}", fontsize=9)
            ax.set_xlabel("diversity level (%)", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    with staged_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": SOFTWARE})
    plt.close(fig)
    return out
