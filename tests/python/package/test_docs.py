"""The worked examples of docs/python.md run as written."""
import os
import re

import pytest

from conftest import SOURCE_DIR

DOC = SOURCE_DIR / "docs/python.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_page_has_its_three_examples():
    assert len(BLOCKS) == 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, tmp_path, monkeypatch):
    if "torch" in BLOCKS[index]:
        pytest.importorskip("torch")
    for folder in ("data", "models"):
        os.symlink(SOURCE_DIR / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"{DOC}:example {index + 1}", "exec"), {"__name__": f"python_md_example_{index}"})


def test_readme_python_example_runs(monkeypatch):
    readme = (SOURCE_DIR / "README.md").read_text()
    block = re.search(r"## From Python.*?```python\n(.*?)```", readme, flags=re.S).group(1)
    monkeypatch.chdir(SOURCE_DIR)
    scope = {}
    exec(compile(block, "README.md: From Python", "exec"), scope)
    assert scope["volumes"].shape == (4, 25, 25, 49) and scope["x"].shape == (4, 25, 25, 49)
