"""`divsft analyze` on synthetic runs with a known slope, checked against a closed-form conjugate update."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_divsft.analysis import bayesian_slope
from hf_divsft.metrics import METRICS

from . import factories
from .conftest import error_line, run_divsft

LEVELS = (0, 17, 33, 50, 67, 83, 100)
TRUE_SLOPES = {"response-micro": 0.0535, "instruction-micro": -0.0545}  # per percent: the paper's 5.35 and -5.45 x1e-2


def synthetic_runs(root, seed: int = 0) -> list[str]:
    """Eval folders whose scores follow score = 30 + slope * level + noise, with their build manifests.

    Each level's response token entropy rises with the level, so its correlation with the score follows the slope.
    """
    rng = np.random.default_rng(seed)
    folders = []
    for strategy, slope in TRUE_SLOPES.items():
        build = root / strategy
        levels = []
        for level in LEVELS:
            metrics = {c: {m: {"value": float(rng.normal())} for m in METRICS} for c in ("instruction", "response")}
            metrics["response"]["token_entropy"]["value"] = 8 + level / 50 + float(rng.normal(0, 0.05))
            entry = factories.level_entry(strategy, level, metrics)
            levels.append(entry)
            for repeat in range(2):
                run = root / "runs" / f"{entry['config']}-{repeat}"
                score = 30 + slope * level + float(rng.normal(0, 0.5))
                subset = {"source": str(build), "config": entry["config"], "strategy": strategy,
                          "level": level, "ids_sha256": entry["ids_sha256"], "num_rows": 100}
                factories.write_json(run / "summary.json", factories.summary(score, subset))
                folders.append(str(run))
        factories.write_json(build / "manifest.json", factories.manifest(strategy, levels))
    return folders


def test_known_slopes_are_recovered_within_their_sd(tmp_path):
    runs = synthetic_runs(tmp_path)
    result = run_divsft("analyze", *runs, "--out", tmp_path / "analysis")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    for strategy, slope in TRUE_SLOPES.items():
        fit = report["slopes"][strategy]
        print(f"{strategy}: true {slope * 100:.2f}, fitted {fit['slope_x1e-2']:.3f} ± {fit['sd_x1e-2']:.3f} (x1e-2)")
        assert abs(fit["slope"] - slope) < 2 * fit["sd"] and fit["n"] == 14
        assert fit["sd"] < abs(slope) / 5  # 14 runs pin the slope down
        assert f"{strategy}: slope {fit['slope_x1e-2']:.3f}" in result.stdout
    results = (tmp_path / "analysis" / "results.md").read_text()
    assert "| response-micro | 14 |" in results and "| token_entropy |" in results
    for png in ("score_vs_diversity.png", "metric_correlations.png"):
        assert (tmp_path / "analysis" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bayesian_ridge_equals_the_closed_form_conjugate_posterior():
    """Given the fitted precisions (noise alpha, weight lambda), the posterior is Gaussian in closed form."""
    rng = np.random.default_rng(1)
    levels = np.repeat(np.array(LEVELS, float), 3)
    scores = 12 + 0.08 * levels + rng.normal(0, 2, len(levels))
    fit = bayesian_slope(levels, scores)
    model = fit["model"]
    x, y = levels - levels.mean(), scores - scores.mean()  # BayesianRidge centres the data for the intercept
    covariance = 1 / (model.lambda_ + model.alpha_ * x @ x)
    mean = model.alpha_ * covariance * (x @ y)
    assert fit["slope"] == pytest.approx(mean, rel=1e-9)
    assert fit["sd"] == pytest.approx(np.sqrt(covariance), rel=1e-9)
    ols = np.polyfit(levels, scores, 1)[0]
    assert fit["slope"] == pytest.approx(ols, rel=0.05)  # the evidence-fitted prior shrinks the slope only a little


def test_correlations_match_numpy_and_follow_the_slope(tmp_path):
    runs = synthetic_runs(tmp_path)
    result = run_divsft("analyze", *runs, "--out", tmp_path / "analysis")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    scores, entropies = [], []
    for run in runs:
        summary = json.loads((tmp_path / "runs" / run.split("/")[-1] / "summary.json").read_text())
        manifest = json.loads((tmp_path / summary["subset"]["strategy"] / "manifest.json").read_text())
        entry = next(e for e in manifest["levels"] if e["config"] == summary["subset"]["config"])
        scores.append(summary["score"])
        entropies.append(entry["metrics"]["response"]["token_entropy"]["value"])
    r = report["correlations"]["response"]["token_entropy"]["r"]
    assert r == pytest.approx(np.corrcoef(entropies, scores)[0, 1], abs=1e-12)


def test_runs_without_a_subset_are_left_out_and_named(tmp_path):
    runs = synthetic_runs(tmp_path)
    base = tmp_path / "runs" / "base-model"
    base.mkdir()
    factories.write_json(base / "summary.json", factories.summary(10.0, None))
    result = run_divsft("analyze", *runs, base, "--out", tmp_path / "analysis")
    assert result.returncode == 0, result.stderr
    assert f"- {base}: its model names no `divsft build` subset" in (tmp_path / "analysis" / "results.md").read_text()
    rebuilt = json.loads((tmp_path / "runs" / "response_micro_d000-0" / "summary.json").read_text())
    rebuilt["subset"]["ids_sha256"] = factories.digest("another selection")
    (base / "summary.json").write_text(json.dumps(rebuilt))
    result = run_divsft("analyze", *runs, base, "--out", tmp_path / "analysis-2")
    assert f"- {base}: {tmp_path / 'response-micro' / 'manifest.json'} no longer holds the subset" in (
        tmp_path / "analysis-2" / "results.md").read_text()
    result = run_divsft("analyze", tmp_path, "--out", tmp_path / "other")
    assert result.returncode == 2
    assert error_line(result.stderr) == f"error: {tmp_path}: not a `divsft eval` output (no summary.json)"


def test_the_slope_sd_is_calibrated_over_many_synthetic_studies():
    """How often the true slope lies within 1 and 2 posterior sd, against the exact Student-t coverage.

    With 14 runs and the noise estimated, a calibrated sd covers the truth as often as a t with 12 degrees
    of freedom does (66% and 93%); 300 studies allow about 3 binomial sd around that.
    """
    from scipy.stats import t

    rng = np.random.default_rng(7)
    levels = np.repeat(np.array(LEVELS, float), 2)
    errors = []
    for _ in range(300):
        scores = 30 + 0.0535 * levels + rng.normal(0, 0.5, len(levels))
        fit = bayesian_slope(levels, scores)
        errors.append(abs(fit["slope"] - 0.0535) / fit["sd"])
    for width in (1, 2):
        expected = t.cdf(width, len(levels) - 2) - t.cdf(-width, len(levels) - 2)
        observed = np.mean(np.array(errors) < width)
        margin = 3 * np.sqrt(expected * (1 - expected) / len(errors))
        print(f"true slope within {width} sd in {observed:.1%} of 300 studies (t coverage {expected:.1%})")
        assert abs(observed - expected) < margin
