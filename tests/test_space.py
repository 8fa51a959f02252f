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

from hf_divsft.explorer import (
    length_table,
    load_results,
    metrics_table,
    source_table,
    type_counts,
    untrusted_html,
    verdict,
)
from hf_divsft.formats.eval_run import EvalRun, PairwiseJudgment

from .conftest import REPO, free_port, hub_env, push_to_mirror, run_divsft, served

APP = REPO / "spaces" / "divsft-explorer" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root in a closed network: no sandbox, and none of its background connections.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCRIPT = "<script>window.__pwned = 1</script>"
# The elements untrusted_html can make (the HTML views must hold no other) and ones a payload would make.
FORMATTING = ["p", "em", "strong", "code", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
              "blockquote", "hr", "br"]
INJECTED = "img, iframe, script, svg, b, i, marquee, a, object, embed, style, link, video, audio, form, input"
# Every element inside the visible HTML views (prompt, answers) and those of them that are not formatting
# elements without attributes (an ordered list's start number aside), or that a payload would make.
HTML_VIEWS = """([formatting, injected]) => {
    const views = [...document.querySelectorAll("#prompt-view, [id^=answer-]")]
        .filter(v => v.checkVisibility()).map(v => v.querySelector(".html-container > div"));
    const made = views.flatMap(view => [...view.querySelectorAll("*")]);
    const foreign = made.filter(e => !formatting.includes(e.localName)
        || [...e.attributes].some(a => !(e.localName === "ol" && a.name === "start")));
    return {views: views.length, tags: [...new Set(made.map(e => e.localName))],
            foreign: foreign.concat(views.flatMap(v => [...v.querySelectorAll(injected)]))
                .map(e => e.outerHTML)};
}"""
# Anywhere in the page: an element carrying a payload's marker, or one of the elements Gradio never makes.
PAYLOADS_RUN = """() => ({marked: [...document.querySelectorAll("[data-pwn]")].map(e => e.outerHTML),
    pwned: window.__pwned ?? null, frames: document.querySelectorAll("iframe, marquee").length})"""


def img(mark: str) -> str:
    """An element that would run script if it reached the page as HTML; `data-pwn` finds it in the page."""
    return f"<img src=x data-pwn={mark} onerror=window.__pwned=1>"


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo-results"
    result = run_divsft("demo-results", "--out", out, cwd=REPO, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_demo_results_hold_real_builds_runs_and_slopes(demo):
    results = load_results(demo)
    assert sorted(build.strategy for build in results.builds) == ["instruction-micro", "response-micro"]
    assert len(results.runs) == 7  # the base model and one LoRA adapter per subset (2 strategies x 3 levels)
    placed = [run for run in results.runs if results.placed(run)]
    assert len(placed) == 6 and all(run.summary.score is not None for run in results.runs)
    assert all(len(run.generations) == 4 and run.generations[0].reference for run in results.runs)
    for build in results.builds:
        config = build.levels[-1].config
        assert build.type_labels() and type_counts(build, config)[0][1] > 0
        assert {row[0] for row in metrics_table(build, config)} >= {"self_bleu", "token_entropy"}
        assert [row[0] for row in length_table(build, config)] == ["instruction", "response"]
        assert sum(share for _, share in source_table(build, config)) == pytest.approx(1, abs=1e-3)
    assert [name for _, name in results.run_choices("response-micro", 50)] == ["runs/response_micro_d050"]
    assert len(results.run_choices("instruction-micro")) == 3 and len(results.run_choices()) == 7
    figure, slopes = results.overview()
    assert figure is not None and [row[0] for row in slopes] == ["instruction-micro", "response-micro"]
    assert all(row[1] == 3 and row[2] is not None and row[3] > 0 for row in slopes)
    assert all(-1 <= row[6] <= 1 for row in slopes)  # the level's r with response length, from the manifests
    analysis = json.loads((demo / "analysis" / "analysis.json").read_text())
    assert {s: round(f["slope_x1e-2"], 3) for s, f in analysis["slopes"].items()} == {row[0]: row[2] for row in slopes}
    assert all(round(f["level_length_r"], 3) == row[6] for f, row in zip(analysis["slopes"].values(), slopes))


def test_pairwise_verdicts_read_per_order():
    judgments = [{"id": "p1", "order": "model_first", "verdict": "A", "model_score": 1.0, "reply": "[[A]]"},
                 {"id": "p1", "order": "reference_first", "verdict": "C", "model_score": 0.5, "reply": "[[C]]"},
                 {"id": "p2", "order": "model_first", "verdict": None, "model_score": None, "reply": "?"}]
    run = EvalRun(Path("runs/x"), None, [], [PairwiseJudgment.model_validate(j) for j in judgments])
    assert verdict(run, "p1") == "**vs the reference: model first: win; reference first: tie**"
    assert verdict(run, "p2") == "**vs the reference: model first: no verdict**"
    assert verdict(run, "p3") == "_no judgment for this prompt_"


def test_model_output_html_holds_no_raw_html():
    text = f"Hi {SCRIPT} & <b>bold</b>\n\n```html\n<p>code</p>\n```\nand `<i>`"
    assert untrusted_html(text) == (
        "<p>Hi &lt;script&gt;window.__pwned = 1&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;</p>\n"
        "<pre><code>&lt;p&gt;code&lt;/p&gt;\n</code></pre>\n<p>and <code>&lt;i&gt;</code></p>\n")


def test_results_from_a_hub_dataset_repo_through_olah(demo, olah_hub, tmp_path):
    endpoint, mirrors = olah_hub
    repo = "testorg/divsft-results"
    work = tmp_path / "work"
    for source in [*demo.glob("runs/*/*"), *demo.glob("builds/*/*.json")]:
        (work / source.parent.relative_to(demo)).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, work / source.relative_to(demo))
    push_to_mirror(work, mirrors / "datasets" / repo)
    client = ("import json, sys; from hf_divsft.explorer import load_results; r = load_results(sys.argv[1]); "
              "print(json.dumps({'runs': len(r.runs), 'builds': len(r.builds), 'slopes': r.overview()[1]}))")
    result = subprocess.run([sys.executable, "-c", client, repo], env=hub_env(endpoint, tmp_path / "home"),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    local = load_results(demo)
    assert remote == {"runs": len(local.runs), "builds": len(local.builds), "slopes": local.overview()[1]}


def test_app_refuses_a_results_file_it_cannot_trust_in_one_line(demo, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(demo, results)
    judgments = results / "runs" / "base" / "judgments.jsonl"
    judgments.write_text(json.dumps({"id": "p1", "order": "<img src=x onerror=alert(1)>", "verdict": "A",
                                     "model_score": 1.0, "reply": "[[A]]"}) + "\n")
    result = subprocess.run([sys.executable, str(APP), "--results", str(results)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {judgments}: line 1: field 'order': ")


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


def inject_hostile_text(results: Path, demo: Path) -> dict:
    """Hostile text in every field of a copied results folder the app shows: the second prompt's
    output (the bypasses of the old regex escaping: HTML in a code span, a `~~~` fence mid-line, an unclosed
    backtick fence; and plain injected elements), prompt and reference, two run labels, a readable type.
    (A judge's `order` or verdict must be one of its few values: the app refuses a file with any other.)
    Returns what the page must show as text."""
    base = results / "runs" / "base" / "generations.jsonl"
    rows = [json.loads(line) for line in base.read_text().splitlines()]
    others = " ".join(row["instruction"] for i, row in enumerate(rows) if i != 1).lower()
    word = max((w for w in re.findall(r"[A-Za-z]{4,}", rows[1]["instruction"]) if w.lower() not in others), key=len)
    span = img("span")
    output = [f"{SCRIPT} I am an untrusted answer.", f"A code span `{span}`,",
              f"a ~~~ fence {img('tilde')} mid-line, an unclosed ``` fence {img('ticks')},",
              "<iframe data-pwn=frame src=javascript:parent.__pwned=1></iframe>",
              "<svg data-pwn=svg onload=window.__pwned=1></svg>", "<b data-pwn=b>bold</b>",
              "<i data-pwn=i>it</i>", "<marquee data-pwn=marquee>m</marquee>"]
    rows[1]["output"] = " ".join(output) + f"\n\n```\n{img('fence')}\n"  # and one unclosed at line start
    rows[1]["instruction"] = f"{img('prompt')} {rows[1]['instruction']}"
    reference = "<svg data-pwn=reference onload=window.__pwned=1></svg>"
    rows[1]["reference"] = f"{reference}\n\n{rows[1]['reference']}"
    base.write_text("".join(json.dumps(row) + "\n" for row in rows))
    edit_json(results / "runs" / "base" / "summary.json", model=img("label"))  # the label names the model

    third = results / "runs" / "instruction_micro_d050"  # judged pairwise; its subset's name is its label
    pairwise = [{"id": rows[1]["id"], "order": "model_first", "verdict": "A", "model_score": 1.0,
                 "reply": f"{img('reply')} [[A]]"},
                {"id": rows[1]["id"], "order": "reference_first", "verdict": "C", "model_score": 0.5,
                 "reply": "[[C]]"}]
    judged = [json.loads(line) for line in (third / "judgments.jsonl").read_text().splitlines()]
    judged = pairwise + [j for j in judged if j["id"] != rows[1]["id"]]
    (third / "judgments.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judged))
    subset = json.loads((third / "summary.json").read_text())["subset"]
    label = f"<b data-pwn=config>{subset['config']}</b>"
    edit_json(third / "summary.json", subset={**subset, "config": label})

    build = load_results(demo).builds[0]  # the Subsets tab opens on the first build's most diverse level
    first = build.subset(build.levels[-1].config)[0]
    labels = results / build.path.relative_to(demo) / "type_labels.json"
    edit_json(labels, **{str(first["types"][0]): img("type")})
    verdict = "vs the reference: model first: win; reference first: tie"
    output = [text.replace(f"`{span}`", span) for text in output]  # the span's backticks are Markdown
    return {"word": word, "output": output, "reference": reference, "verdict": verdict, "label": label,
            "third": f"[{third.relative_to(results)}]", "first_id": first["id"]}


def edit_json(path: Path, **fields) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_app_compares_outputs_escapes_html_and_browses_subsets(browser, demo, tmp_path):
    results = tmp_path / f"results {img('path')}"  # the folder's path is shown too
    shutil.copytree(demo, results)
    shown = inject_hostile_text(results, demo)
    url, server = start_app(results, tmp_path)
    with server:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(url)
        page.locator("#slopes").wait_for(timeout=60_000)
        assert "response-micro" in page.locator("#slopes").inner_text()
        assert img("path") in page.locator("#results-source").inner_text()

        page.get_by_role("tab", name="Compare").click()
        search = page.locator("#search input, #search textarea").first
        search.fill(shown["word"])  # a word only this prompt holds
        answers = [page.locator(f"#answer-{i}") for i in range(2)]
        answers[0].get_by_text("I am an untrusted answer").wait_for(timeout=60_000)
        page.locator("#models label").filter(has_text=shown["third"]).click()  # a third one, judged pairwise
        judged = page.locator("[id^=answer-]").filter(has_text="vs the reference")
        judged.wait_for(timeout=60_000)
        assert SCRIPT in answers[0].inner_text()  # shown as text ...
        assert page.evaluate("window.__pwned") is None  # ... and never run
        assert all(text in answers[0].inner_text() for text in shown["output"] + [img("fence"), img("label")])
        assert "reference NLL" in answers[0].inner_text() and "reference NLL" in answers[1].inner_text()
        assert shown["verdict"] in judged.inner_text() and shown["label"] in judged.inner_text()
        prompt_view = page.locator("#prompt-view").inner_text()
        assert all(text in prompt_view for text in (shown["word"], img("prompt"), shown["reference"]))
        assert img("prompt") in page.locator("#prompt input").input_value()  # the prompt menu shows text
        assert img("label") in page.locator("#models").inner_text()  # and the model checkboxes
        views = page.evaluate(HTML_VIEWS, [FORMATTING, INJECTED])
        assert views["views"] == 4 and views["foreign"] == []
        assert {"h3", "p", "code", "pre", "hr", "strong"} <= set(views["tags"])
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

        page.get_by_role("tab", name="Subsets").click()
        page.locator("#subset-rows").get_by_text(shown["first_id"]).first.wait_for(timeout=60_000)
        assert img("type") in page.locator("#subset-rows").inner_text()  # a Dataframe "str" cell shows text
        assert "response" in page.locator("#subset-lengths").inner_text()  # the confounds beside the metrics
        assert "source = " in page.locator("#subset-sources").inner_text()
        page.get_by_role("tab", name="Metrics").click()
        page.get_by_text("Pearson r with score").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "metrics.png"), full_page=True)
        assert page.evaluate(PAYLOADS_RUN) == {"marked": [], "pwned": None, "frames": 0} and dialogs == []
        page.close()
    assert (tmp_path / "compare.png").stat().st_size > 10_000
