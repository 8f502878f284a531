"""Every ``python`` code block of the docs runs (each block in a fresh namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
EXAMPLES = [(page, i, code) for page in sorted(DOCS.glob("*.md"))
            for i, code in enumerate(BLOCK.findall(page.read_text()))]


@pytest.mark.parametrize("page, index, code", EXAMPLES, ids=[f"{p.stem}-{i}" for p, i, _ in EXAMPLES])
def test_docs_example_runs(page, index, code, one_thread):
    exec(compile(code, f"{page.name}[python block {index}]", "exec"), {"__name__": f"docs_example_{index}"})  # noqa: S102 - the docs' own examples


def test_the_docs_have_examples():
    assert len(EXAMPLES) >= 2
