"""Dataset cards for published subsets, rendered from the Jinja templates in `dataset_cards/`.

The card's YAML carries what the Hub and `load_dataset` read (license, task and size categories, source
datasets, and one `configs:` entry per subset); its body explains each strategy, its settings and every
level's metrics. Values are formatted here so the template only lays them out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .assets import shipped_file
from .errors import DivsftError
from .hub import repo_id_problem
from .metrics import METRICS
from .paper import PAPER_CITATION, PAPER_TITLE, PAPER_URL
from .strategies import COMPONENTS, LEVELS, Strategy

SUBSETS_TEMPLATE = "subsets.md.j2"


def config_paths(config: str) -> str:
    """Where a config's parquet shards live in the repository (the `data_files` glob)."""
    return f"data/{config}/*.parquet"


def size_category(rows: int) -> str:
    """The Hub's size category for a number of rows (`n<1K`, `1K<n<10K`, ...)."""
    names = ["n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B"]
    return names[min(max(int(math.log10(max(rows, 1))) - 2, 0), len(names) - 1)]


def render_subsets_card(release: dict, repo_id: str, license: str, license_source: str) -> str:
    """README.md for a repository whose root manifest is `release` (every published strategy)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    template = shipped_file("dataset_cards", SUBSETS_TEMPLATE)
    builds = release["strategies"]
    configs = [level["config"] for build in builds.values() for level in build["levels"]]
    rows = sum(level["num_rows"] for build in builds.values() for level in build["levels"])
    card_data = DatasetCardData(
        license=license,
        language=["en"],
        task_categories=["text-generation"],
        size_categories=[size_category(rows)],
        source_datasets=sorted({_source_name(build["pool"]) for build in builds.values()}),
        pretty_name=f"{repo_id.split('/')[-1]}: diversity-controlled SFT subsets",
        tags=["sft", "instruction-tuning", "data-diversity", "hf-divsft"],
        configs=[{"config_name": c, "data_files": [{"split": "train", "path": config_paths(c)}]} for c in configs],
    )
    card = DatasetCard.from_template(
        card_data,
        template_path=str(template),
        pretty_name=card_data.pretty_name,
        repo_id=repo_id,
        tag=f"v{release['version']}",
        example_config=configs[-1],
        paper_title=PAPER_TITLE,
        paper_url=PAPER_URL,
        strategies=[_strategy_section(name, build) for name, build in builds.items()],
        license=license,
        license_source=license_source,
        citation=PAPER_CITATION,
        metric_labels=[metric.label for metric in METRICS.values()],
    )
    return validate_card(str(card))


def validate_card(text: str) -> str:
    """Check a card's YAML as `datasets` reads it (configs, size and language vocabularies); returns it."""
    from datasets.utils import resources
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    data = DatasetCard(text).data
    try:
        MetadataConfigs.from_dataset_card_data(data)
    except ValueError as err:
        raise DivsftError(f"dataset card: invalid configs ({err})") from err
    allowed = {
        "size_categories": json.loads((Path(resources.__file__).parent / "size_categories.json").read_text()),
        "language": json.loads((Path(resources.__file__).parent / "languages.json").read_text()),
    }
    for key, vocabulary in allowed.items():
        unknown = [value for value in data.get(key) or [] if value not in vocabulary]
        if unknown:
            raise DivsftError(f"dataset card: {key} {unknown} is not in the Hub's vocabulary")
    if not isinstance(data.license, str) or not data.license:
        raise DivsftError("dataset card: license must be one identifier, e.g. apache-2.0 or other")
    return text


def _strategy_section(name: str, build: dict) -> dict:
    strategy = Strategy.parse(name)
    settings = [
        ("pool", f"`{build['pool']}` ({build['pool_rows']:,} rows; fingerprint `{build['pool_fingerprint'][:16]}`)"),
        ("subset size N", f"{build['size']:,}"),
        ("seed", build["seed"]),
        ("types in the pool", f"{build['types_total']:,} (carried by {build['typed_rows']:,} rows)"),
        ("extractor", f"`{json.dumps(build['extractor'], sort_keys=True)}`"),
        ("first published in", f"v{build['published_in']} (hf-divsft {build['hf_divsft_version']})"),
    ]
    if build.get("response_tokens"):
        settings.append(("response length band", "{}..{} tokens".format(*build["response_tokens"])))
    levels = [
        [f"`{e['config']}`", f"{e['level']}%", e["k"], e["types_covered"], f"{e['type_entropy']:.3f}", e["num_rows"]]
        for e in build["levels"]
    ]
    metrics = [
        [f"`{e['config']}`", *(_pair(e["metrics"], metric) for metric in METRICS)]
        for e in build["levels"] if e.get("metrics")
    ]
    description = (
        f"Types are the {strategy.component}s' {LEVELS[strategy.level].unit}. Reverse greedy pruning keeps "
        f"k types per level and token-aware sampling spreads N samples evenly over them."
    )
    return {"name": name, "description": description, "settings": settings, "levels": levels, "metrics": metrics}


def _pair(metrics: dict, metric: str) -> str:
    values = [metrics.get(component, {}).get(metric, {}).get("value") for component in COMPONENTS]
    return " / ".join("n/a" if value is None else f"{value:.3g}" for value in values)


def _source_name(pool: str) -> str:
    """A pool as the card's `source_datasets`: a Hub id as is, a local folder or file by its name."""
    path = Path(pool)
    if not path.exists() and not repo_id_problem(pool):
        return pool
    return path.stem if path.suffix else path.name


def pool_license(pool: str) -> str | None:
    """The license in the pool's own card (a local Hub-layout folder, or a Hub id); None if it has none."""
    from huggingface_hub import DatasetCard

    readme = Path(pool) / "README.md"
    try:
        if readme.is_file():
            card = DatasetCard.load(readme)
        elif not Path(pool).exists() and not repo_id_problem(pool):
            card = DatasetCard.load(pool, repo_type="dataset")
        else:
            return None
    except Exception:  # an unreachable Hub or a card without YAML: the caller falls back and says so
        return None
    license = card.data.license
    return license if isinstance(license, str) else None
