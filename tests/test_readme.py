"""The README's Python API example runs as written and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import REPO


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    examples = [block for block in blocks if "TypeSelector" in block]
    assert len(examples) == 1
    return examples[0]


def test_readme_api_example_runs():
    code = readme_example()
    assert len(code.strip().splitlines()) <= 12
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.strip().splitlines()]
    assert [line[0] for line in lines] == ["0", "50", "100"]
    assert all(line[1] == "500" for line in lines)
    covered = [int(line[2]) for line in lines]
    assert covered == sorted(covered) and covered[0] < covered[-1]
