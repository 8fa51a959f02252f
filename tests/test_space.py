"""The Space: `divsft demo-results` makes real results, the explorer reads them (locally and from a Hub repo
served by olah), and the real app is driven in headless Debian chromium through Playwright."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_divsft.explorer import EvalRun, load_results, safe_markdown

from .conftest import REPO, free_port, hub_env, run_divsft, served

APP = REPO / "spaces" / "divsft-explorer" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root in a closed network: no sandbox, and none of its background connections.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCRIPT = "<script>window.__pwned = 1</script>"


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo-results"
    result = run_divsft("demo-results", "--out", out, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_demo_results_hold_real_builds_runs_and_slopes(demo):
    results = load_results(demo)
    assert sorted(build.strategy for build in results.builds) == ["instruction-micro", "response-micro"]
    assert len(results.runs) == 7  # the base model and one LoRA adapter per subset (2 strategies x 3 levels)
    placed = [run for run in results.runs if results.placed(run)]
    assert len(placed) == 6 and all(run.summary["score"] is not None for run in results.runs)
    assert all(len(run.generations) == 4 and run.generations[0]["reference"] for run in results.runs)
    for build in results.builds:
        config = build.manifest["levels"][-1]["config"]
        assert build.labels and build.type_counts(config)[0][1] > 0
        assert {row[0] for row in build.metrics_table(config)} >= {"self_bleu", "token_entropy"}
    assert [name for _, name in results.run_choices("response-micro", 50)] == ["runs/response_micro_d050"]
    assert len(results.run_choices("instruction-micro")) == 3 and len(results.run_choices()) == 7
    figure, slopes = results.overview()
    assert figure is not None and [row[0] for row in slopes] == ["instruction-micro", "response-micro"]
    assert all(row[1] == 3 and row[2] is not None and row[3] > 0 for row in slopes)
    analysis = json.loads((demo / "analysis" / "analysis.json").read_text())
    assert {s: round(f["slope_x1e-2"], 3) for s, f in analysis["slopes"].items()} == {row[0]: row[2] for row in slopes}


def test_pairwise_verdicts_read_per_order():
    judgments = [{"id": "p1", "order": "model_first", "verdict": "A", "model_score": 1.0, "reply": "[[A]]"},
                 {"id": "p1", "order": "reference_first", "verdict": "C", "model_score": 0.5, "reply": "[[C]]"},
                 {"id": "p2", "order": "model_first", "verdict": None, "model_score": None, "reply": "?"}]
    run = EvalRun("runs/x", {"score": 75.0}, [], judgments)
    assert run.verdict("p1") == "**vs the reference: model first: win; reference first: tie**"
    assert run.verdict("p2") == "**vs the reference: model first: no verdict**"
    assert run.verdict("p3") == "_no judgment for this prompt_"


def test_model_output_markdown_holds_no_html():
    text = f"Hi {SCRIPT} & <b>bold</b>\n\n```html\n<p>code</p>\n```\nand `<i>`"
    shown = safe_markdown(text)
    assert "<script>" not in shown and "&lt;script&gt;" in shown and "&lt;b&gt;" in shown and "&amp;" in shown
    assert "```html\n<p>code</p>\n```" in shown and "`<i>`" in shown  # code is shown as text by Markdown itself


def test_results_from_a_hub_dataset_repo_through_olah(demo, olah_hub, tmp_path):
    endpoint, mirrors = olah_hub
    repo = "testorg/divsft-results"
    work = tmp_path / "work"
    for source in [*demo.glob("runs/*/*"), *demo.glob("builds/*/*.json")]:
        (work / source.parent.relative_to(demo)).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, work / source.relative_to(demo))
    bare = mirrors / "datasets" / repo
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "results"], check=True)
    subprocess.run([*git, "-C", str(work), "push", "-q", str(bare), "main"], check=True)
    client = ("import json, sys; from hf_divsft.explorer import load_results; r = load_results(sys.argv[1]); "
              "print(json.dumps({'runs': len(r.runs), 'builds': len(r.builds), 'slopes': r.overview()[1]}))")
    result = subprocess.run([sys.executable, "-c", client, repo], env=hub_env(endpoint, tmp_path / "home"),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    local = load_results(demo)
    assert remote == {"runs": len(local.runs), "builds": len(local.builds), "slopes": local.overview()[1]}


def test_app_names_a_results_source_it_cannot_read(tmp_path):
    missing = tmp_path / "no" / "such" / "results"
    result = subprocess.run([sys.executable, str(APP), "--results", str(missing)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == f"error: {missing}: no such folder, and not a Hub dataset repo id (owner/name)"


def start_app(results: Path | None, tmp_path: Path):
    port = free_port()
    command = [sys.executable, str(APP), "--port", str(port)] + (["--results", str(results)] if results else [])
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "DIVSFT_RESULTS": ""}
    return f"http://127.0.0.1:{port}", served(command, f"http://127.0.0.1:{port}/", tmp_path / "app.log",
                                              timeout=120, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_app_without_results_says_what_to_run(browser, tmp_path):
    url, server = start_app(None, tmp_path)
    with server:
        page = browser.new_page()
        page.goto(url)
        page.locator("#no-results").wait_for(timeout=60_000)
        assert "divsft demo-results --out demo-results" in page.locator("#no-results").inner_text()
        page.close()


def test_app_compares_outputs_escapes_html_and_browses_subsets(browser, demo, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(demo, results)
    base = results / "runs" / "base" / "generations.jsonl"
    rows = [json.loads(line) for line in base.read_text().splitlines()]
    rows[1]["output"] = f"{SCRIPT} I am an untrusted answer."
    base.write_text("".join(json.dumps(row) + "\n" for row in rows))
    others = " ".join(row["instruction"] for i, row in enumerate(rows) if i != 1).lower()
    word = max((w for w in re.findall(r"[A-Za-z]{4,}", rows[1]["instruction"]) if w.lower() not in others), key=len)
    subsets = load_results(demo).builds[0]  # the Subsets tab opens on the first build's most diverse level
    first_id = subsets.rows(subsets.manifest["levels"][-1]["config"])[0]["id"]
    url, server = start_app(results, tmp_path)
    with server:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#slopes").wait_for(timeout=60_000)
        assert "response-micro" in page.locator("#slopes").inner_text()

        page.get_by_role("tab", name="Compare").click()
        page.locator("#search input, #search textarea").first.fill(word)  # a word only this prompt holds
        answers = [page.locator(f"#answer-{i}") for i in range(2)]
        answers[0].get_by_text("I am an untrusted answer").wait_for(timeout=60_000)
        assert SCRIPT in answers[0].inner_text()  # shown as text ...
        assert page.evaluate("window.__pwned") is None  # ... and never run
        assert "reference NLL" in answers[0].inner_text() and "reference NLL" in answers[1].inner_text()
        assert word in page.locator("#prompt-view").inner_text()
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

        page.get_by_role("tab", name="Subsets").click()
        page.locator("#subset-rows").get_by_text(first_id).first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Metrics").click()
        page.get_by_text("Pearson r with score").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "metrics.png"), full_page=True)
        page.close()
    assert (tmp_path / "compare.png").stat().st_size > 10_000
