"""Untrusted text never becomes markup: `untrusted_html` (and the Compare view built with it) is checked over
generated hostile strings with hypothesis, and over the inputs that got past the old regex escaping."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_divsft.explorer import Results, untrusted_html, verdict
from hf_divsft.formats.eval_run import (
    EvalRun,
    Generation,
    NllJudgment,
    PairwiseJudgment,
    Summary,
    TrainingSubset,
)
from hf_divsft.formats.results import ResultsFolder

ROOT = Path("/results")


def eval_run(name: str, generations: list[dict], judgments: list[dict], config: str | None = None,
             model: str = "smollm2") -> EvalRun:
    """A run holding exactly these values, built without validation: the formats refuse many hostile values
    on reading (an `order` must be model_first or reference_first), but the view must escape them anyway."""
    subset = TrainingSubset.model_construct(source="b", num_rows=1, config=config) if config else None
    summary = Summary.model_construct(judge={}, metric="", score=50.0, n=1, model=model, subset=subset,
                                      eval_set="e", configs=[])
    return EvalRun(ROOT / name, summary, [Generation.model_construct(**g) for g in generations],
                   [(NllJudgment if "nll_sum" in j else PairwiseJudgment).model_construct(**j)
                    for j in judgments])


def results(*runs: EvalRun) -> Results:
    return Results(ResultsFolder(ROOT, [], list(runs)))

# What markdown-it emits for CommonMark without HTML, links and images, and the Compare view's own h3 and hr.
ALLOWED = {"p", "em", "strong", "code", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
           "blockquote", "hr", "br"}
# The same, written out as markdown-it writes it: a lexical check that does not trust a lenient parser.
TAG = re.compile(r'</?(?:p|em|strong|code|pre|ul|ol|li|h[1-6]|blockquote)>|<ol start="\d+">|<(?:hr|br) />')
ENTITY = re.compile(r"&(?:amp|lt|gt|quot);")

ALPHABET = "<>&\"'`~*_[]()!#|\n\n\\=/:;.- \tabxyz019"
# Hostile fragments shown verbatim as text wherever they land (but in a fence's info string, never shown)
SHOWN = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<b>", "</b>", "<i>", "</code>", "</pre>",
    "<svg onload=alert(1)>", '"><svg/onload=alert(1)>', "<iframe src=javascript:alert(1)></iframe>",
    "<marquee>", "<p onclick=alert(1)>", '<a href="javascript:alert(1)">x</a>', "[x](javascript:alert(1))",
    "![i](http://x/y.png)", "<javascript:alert(1)>", "<http://x/>", "[x]: javascript:alert(1)", "<!-- x -->",
    "<![CDATA[<b>]]>", "<?php x ?>", "<!DOCTYPE html>", "$x^2$",
]
# ... ones whose Markdown markers are consumed, with the part that must still show ...
PARTLY = {
    "`<img src=x onerror=alert(1)>`": "<img src=x onerror=alert(1)>", "``<b>``": "<b>",
    "see ~~~<img src=x onerror=alert(1)>": "<img src=x onerror=alert(1)>",  # mid-line: no fence
    "a ```<img src=x onerror=alert(1)>": "<img src=x onerror=alert(1)>", "\\<b>": "<b>",
    "\n    <b>": "<b>", "\n> <b>": "<b>", "\n- <i>": "<i>", "\n1. <i>": "<i>", "\n7) <i>": "<i>",
    "\n# <h1>": "<h1>",
}
# ... and ones Markdown may decode or consume whole: entities, fences, breaks, emphasis (`__`), odd characters
CONSUMED = [
    "&lt;b&gt;", "&#60;script&#62;", "&#x3C;img&#x3E;", "&amp;lt;", "&",
    "<script>window.__pwned = 1</script>",
    "```", "~~~", "\n```\n", "\n~~~\n", "\n```html\n", '\n```"><img src=x onerror=alert(1)>\n',
    "\n~~~ <b onmouseover=alert(1)>\n", "\n---\n", "\n===\n", "  \n", "\x00", "\r\n", "\u2028",
]
FRAGMENTS = [(f, f) for f in SHOWN] + list(PARTLY.items()) + [(f, None) for f in CONSUMED]
pieces = st.one_of(st.text(ALPHABET, max_size=12), st.sampled_from(range(len(FRAGMENTS))),
                   st.text(max_size=4))  # any characters at all, now and then


def hostile(drawn: list) -> tuple[str, list[str]]:
    """The string, and the fragments it must show as text (those not on a line that may open a fence)."""
    text, shown = "", []
    for piece in drawn:
        if isinstance(piece, int):
            fragment, must = FRAGMENTS[piece]
            line = re.split(r"\r\n?|\n", text)[-1]
            if must and "```" not in line and "~~~" not in line:  # a fence's info string is not shown
                shown.append(must)
            piece = fragment
        text += piece
    return text, shown


hostile_strings = st.lists(pieces, max_size=14).map(hostile)


class Page(HTMLParser):
    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list]] = []
        self.text: list[str] = []
        self.other: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.other.append(f"comment {data}")

    def handle_decl(self, decl):
        self.other.append(f"declaration {decl}")

    def handle_pi(self, data):
        self.other.append(f"processing instruction {data}")

    def unknown_decl(self, data):
        self.other.append(f"declaration {data}")


def assert_no_markup(markup: str, shown: list[str] = ()) -> str:
    """Only markdown-it's formatting elements, no attribute but an ordered list's start number, no comment
    or declaration; every fragment in `shown` is visible text. Returns the visible text."""
    page = Page(markup)
    for tag, attrs in page.tags:
        assert tag in ALLOWED, (tag, markup)
        assert all(not name.startswith("on") and "javascript:" not in (value or "") for name, value in attrs)
        assert attrs == [] or (tag == "ol" and len(attrs) == 1 and attrs[0][0] == "start"
                               and re.fullmatch(r"\d+", attrs[0][1])), (tag, attrs, markup)
    assert page.other == [], markup
    leftover = TAG.sub("", markup)
    assert not set("<>\"") & set(leftover), markup
    assert "&" not in ENTITY.sub("", leftover), markup
    text = "".join(page.text)
    for fragment in shown:
        assert fragment in text, (fragment, markup)
    return text


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_strings, st.booleans())
def test_untrusted_text_never_becomes_markup(case, inline):
    text, shown = case
    assert_no_markup(untrusted_html(text, inline=inline), shown)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_strings, min_size=6, max_size=6))
def test_compare_view_renders_every_results_field_as_text(cases):
    """Prompt, reference, output, run labels and the pairwise judge's `order`, all from editable files."""
    (instruction, i_shown), (reference, r_shown), (output, o_shown), (config, c_shown), (order, d_shown), \
        (model, _) = cases
    row = {"id": "p1", "instruction": instruction, "reference": reference, "output": output}
    pairwise = eval_run("runs/a", [row], [{"id": "p1", "order": order, "verdict": order, "model_score": 1.0}],
                        config=config)
    proxy = eval_run("runs/b", [{**row, "output": model}], [{"id": "p1", "nll_sum": 3.0, "tokens": 2}],
                     model=model)
    header, blocks = results(pairwise, proxy).answers("p1", ["runs/a", "runs/b"])
    assert_no_markup(header, i_shown + r_shown)
    first = assert_no_markup(blocks[0], o_shown + c_shown + [s.replace("_", " ") for s in d_shown])
    assert "vs the reference" in first
    assert "reference NLL 1.500" in assert_no_markup(blocks[1])


# The inputs a hostile-input review got past the old regex escaping (raw HTML in the page), and more.
BYPASSES = [
    "inline `<img src=x onerror=alert(1)>` code span",  # the span's HTML was left raw
    "a ~~~ fence <img src=x onerror=alert(1)> mid-line",  # the regex took `~~~...` for code, Markdown did not
    "an unclosed ``` fence <img src=x onerror=alert(1)>",  # ditto for an unclosed backtick run
    "```\n<img src=x onerror=alert(1)>\n",  # an unclosed fence at line start: code to the end
    '```"><img src=x onerror=alert(1)>\ncode\n```',  # the info string would be the code's class
    "<!-- <img src=x onerror=alert(1)> --> <![CDATA[<svg onload=alert(1)>]]> &#60;b&#62; &lt;i&gt;",
    "[click](javascript:alert(1)) <javascript:alert(1)> ![x](http://x/y.png) [r]\n\n[r]: javascript:alert(1)",
]


def test_the_bypasses_of_the_regex_escaping_show_as_text():
    for text in BYPASSES[:3]:
        assert "<img src=x onerror=alert(1)>" in assert_no_markup(untrusted_html(text)), text
    assert untrusted_html(BYPASSES[3]) == "<pre><code>&lt;img src=x onerror=alert(1)&gt;\n</code></pre>\n"
    assert untrusted_html(BYPASSES[4]) == "<pre><code>code\n</code></pre>\n"  # the info string is dropped
    shown = assert_no_markup(untrusted_html(BYPASSES[5]))
    assert shown == "<!-- <img src=x onerror=alert(1)> --> <![CDATA[<svg onload=alert(1)>]]> <b> <i>\n"
    shown = assert_no_markup(untrusted_html(BYPASSES[6]))
    assert "[click](javascript:alert(1))" in shown and "[r]: javascript:alert(1)" in shown


def test_a_judgments_order_field_shows_as_text():
    order = '<img src=x onerror=alert(1)>_"><svg onload=alert(1)>'
    run = eval_run("runs/x", [{"id": "p1", "instruction": "hi", "output": "ok"}],
                   [{"id": "p1", "order": order, "verdict": "<b>A</b>", "model_score": 0.0}])
    _, [block] = results(run).answers("p1", ["runs/x"])
    assert "<img src=x onerror=alert(1)> \"><svg onload=alert(1)>: loss" in assert_no_markup(block)
    assert_no_markup(untrusted_html(verdict(run, "p1")))


def test_a_judgments_file_with_a_hostile_order_is_refused_on_reading(tmp_path):
    """The first line of defence: the eval run format names the field (the view escapes it regardless)."""
    import json

    from hf_divsft.errors import DivsftError

    from . import factories

    factories.write_json(tmp_path / "summary.json", factories.summary(50.0, None))
    (tmp_path / "judgments.jsonl").write_text(json.dumps(
        {"id": "p1", "order": "<img src=x>", "verdict": "A", "model_score": 1.0, "reply": "[[A]]"}) + "\n")
    with pytest.raises(DivsftError, match=r"judgments.jsonl: line 1: field 'order'"):
        EvalRun.read(tmp_path)


def test_formatting_still_renders():
    assert untrusted_html("**bold** _em_ `code`\n\n3. x\n4. y\n\n> q\n\n---") == (
        "<p><strong>bold</strong> <em>em</em> <code>code</code></p>\n"
        '<ol start="3">\n<li>x</li>\n<li>y</li>\n</ol>\n<blockquote>\n<p>q</p>\n</blockquote>\n<hr />\n')
    assert untrusted_html("a *b* <i>", inline=True) == "a <em>b</em> &lt;i&gt;"
