"""hf-divsft explorer: which diversity-controlled subset made which model better, and why.

    python app.py --results demo-results          # a results folder (`divsft demo-results` makes one)
    python app.py --results owner/results-repo    # or a Hub dataset repo holding one (HF_ENDPOINT applies)

On a Space, set the variable DIVSFT_RESULTS instead of passing --results.
Everything read from the results is untrusted (anyone can edit those files): the Compare view shows the
HTML that `hf_divsft.explorer.untrusted_html` makes on the server (markdown-it's formatting elements only,
no raw HTML, links or images) in gr.HTML, as is; tables, menus and checkboxes show plain text.
"""

from __future__ import annotations

import argparse
import html
import os
import sys

import gradio as gr

from hf_divsft.errors import DivsftError
from hf_divsft.explorer import (
    LENGTH_COLUMNS,
    NO_RESULTS,
    Results,
    length_table,
    load_results,
    metrics_table,
    preview,
    source_table,
    type_counts,
    types_figure,
)

MAX_COMPARED = 4  # answer columns in the Compare tab
ANY = "any"


def figure_and_table(figure, table: list, missing: str, plot_label: str, headers: list[str], table_label: str,
                     elem_id: str | None = None) -> None:
    """A figure above its table, or what is missing for them."""
    if figure is None:
        gr.Markdown(missing)
        return
    gr.Plot(figure, label=plot_label)
    gr.Dataframe(table, headers=headers, label=table_label, elem_id=elem_id)


def overview_tab(results: Results) -> None:
    figure_and_table(*results.overview(),
                     "No eval run names a subset of these builds yet: train on a subset, then `divsft eval` it.",
                     "Score against diversity level (posterior mean and 1-sigma band)",
                     ["strategy", "runs", "slope (x1e-2)", "sd (x1e-2)", "intercept", "r(score, response length)",
                      "r(level, response length)"],
                     "Slopes (Bayesian linear regression; needs 3 runs at 2 or more levels), and whether response "
                     "length could explain them", elem_id="slopes")


def compare_tab(results: Results) -> tuple:
    """Outputs side by side; returns the (function, inputs, outputs) that fills it when the page loads."""
    strategies = sorted({build.strategy for build in results.builds})
    levels = sorted({entry.level for build in results.builds for entry in build.levels})
    with gr.Row():
        strategy = gr.Dropdown([ANY, *strategies], value=ANY, label="Strategy")
        level = gr.Dropdown([ANY, *map(str, levels)], value=ANY, label="Diversity level (%)")
        search = gr.Textbox(label="Search prompts", placeholder="a word from the prompt", elem_id="search")
    prompts = results.prompts()
    prompt = gr.Dropdown(prompts, value=prompts[0][1] if prompts else None, label="Prompt", elem_id="prompt")
    runs = results.run_choices()
    chosen = gr.CheckboxGroup(runs, value=[name for _, name in runs[:2]], label="Models (runs) side by side",
                              elem_id="models")
    # gr.HTML shows the server-made HTML as is; gr.Markdown would run its own Markdown, HTML and LaTeX on it
    header = gr.HTML(elem_id="prompt-view")
    with gr.Row():
        columns = [gr.HTML(elem_id=f"answer-{i}", elem_classes="answer") for i in range(MAX_COMPARED)]

    def show(prompt_id, names):
        if not prompt_id or not names:
            return (["<p><em>pick a prompt and at least one model</em></p>"]
                    + [gr.update(value="", visible=False)] * MAX_COMPARED)
        text, blocks = results.answers(prompt_id, names[:MAX_COMPARED])
        blocks += [""] * (MAX_COMPARED - len(blocks))
        return [text] + [gr.update(value=block, visible=bool(block)) for block in blocks]

    def filter_runs(strategy_name, level_text, names):
        choices = results.run_choices(None if strategy_name == ANY else strategy_name,
                                      None if level_text == ANY else int(level_text))
        keep = [name for name in names if name in {value for _, value in choices}]
        return gr.update(choices=choices, value=keep or [value for _, value in choices[:2]])

    def filter_prompts(query):
        found = results.prompts(query)
        return gr.update(choices=found, value=found[0][1] if found else None)

    for control in (strategy, level):
        control.change(filter_runs, [strategy, level, chosen], chosen)
    search.change(filter_prompts, search, prompt)
    for control in (prompt, chosen):
        control.change(show, [prompt, chosen], [header, *columns])
    return show, [prompt, chosen], [header, *columns]


def subsets_tab(results: Results) -> tuple | None:
    """One subset's metrics, types and rows; returns what fills it when the page loads."""
    builds = [build.strategy for build in results.builds]
    if not builds:
        gr.Markdown("No `divsft build` folder in these results.")
        return None

    def configs(name: str) -> list[str]:
        return [entry.config for entry in results.build(name).levels]

    with gr.Row():
        strategy = gr.Dropdown(builds, value=builds[0], label="Build (strategy)", elem_id="subset-build")
        level = gr.Dropdown(configs(builds[0]), value=configs(builds[0])[-1], label="Subset (level)",
                            elem_id="subset-level")
        search = gr.Textbox(label="Search rows", placeholder="a word from the instruction or response")
    with gr.Row():
        metrics = gr.Dataframe(headers=["metric", "instruction", "response"], label="The six metrics")
        lengths = gr.Dataframe(headers=["component", *LENGTH_COLUMNS], label="Length (tokens)",
                               elem_id="subset-lengths")
        sources = gr.Dataframe(headers=["source", "share"], label="Source mix", elem_id="subset-sources")
    types = gr.Plot(label="Most frequent types")
    rows = gr.Dataframe(headers=["id", "instruction", "response", "types (readable)"], label="Rows (first 100 matches)",
                        wrap=True, elem_id="subset-rows")

    def pick_build(name):
        return gr.update(choices=configs(name), value=configs(name)[-1])

    def search_rows(name, config, query):
        # while a new build's levels are being set, `config` can still name the old build's level
        return preview(results.build(name), config, query) if config in configs(name) else gr.update()

    def show(name, config, query):
        if config not in configs(name):
            return (gr.update(),) * 5
        build = results.build(name)
        figure = types_figure(type_counts(build, config), f"{config}: types held by the most rows")
        return (metrics_table(build, config), length_table(build, config), source_table(build, config), figure,
                search_rows(name, config, query))

    shown = [metrics, lengths, sources, types, rows]
    strategy.change(pick_build, strategy, level)
    level.change(show, [strategy, level, search], shown)
    search.change(search_rows, [strategy, level, search], rows)  # the metrics and types stay as they are
    return show, [strategy, level, search], shown


def metrics_tab(results: Results) -> None:
    figure_and_table(*results.metric_correlations(),
                     "Correlations need at least 3 scored runs trained on subsets of these builds.",
                     "Pearson r of each metric with the score", ["metric", "instruction r", "response r"],
                     "Pearson r with score")


def build_app(results: Results) -> gr.Blocks:
    with gr.Blocks(title="hf-divsft explorer") as app:
        gr.Markdown("# hf-divsft explorer\nDiversity-controlled SFT subsets after *From Macro to Micro* (AAAI 2026): "
                    "which subset made which model better, and why.")
        if results.empty:
            gr.Markdown(NO_RESULTS, elem_id="no-results")
            return app
        gr.HTML(f"<p>Results: <code>{html.escape(str(results.root))}</code>: {len(results.builds)} builds, "
                f"{len(results.runs)} eval runs.</p>", elem_id="results-source")  # a path, shown as text
        with gr.Tabs():
            with gr.Tab("Overview"):
                overview_tab(results)
            with gr.Tab("Compare"):
                loaders = [compare_tab(results)]
            with gr.Tab("Subsets"):
                loaders.append(subsets_tab(results))
            with gr.Tab("Metrics"):
                metrics_tab(results)
        for fn, inputs, outputs in filter(None, loaders):
            app.load(fn, inputs, outputs)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=os.environ.get("DIVSFT_RESULTS"),
                        help="a results folder or a Hub dataset repo id (default: $DIVSFT_RESULTS)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    try:
        results = load_results(args.results)
    except DivsftError as err:
        sys.exit(f"error: {err}")
    build_app(results).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
