"""Every ```python block of README.md and docs/*.md runs, as a user would paste it, so an example in the
documentation cannot break silently.

Convention (for whoever writes the documentation):

* Blocks fenced as ```python run; other fences (```bash, ```text, ```py for fragments) do not.
* The blocks of one file run in order in one fresh interpreter and share its namespace, as in a notebook: a
  later block may use names an earlier one defined. A failure names the file and the line in it.
* They run in an empty temporary working directory (files they write vanish) with the environment of the
  test run: data files come from ``$IRREGCONV_DATA`` (``irregconv.data.data_root()``).
* ``<!-- readme-test: skip REASON -->`` on the line before a block leaves it out (say why: it needs a GPU, a
  network, the real spconv, ...).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip\b(.*?)-->")
FENCE = re.compile(r"^```(\S*)\s*$")

#: runs the blocks (JSON on stdin) in one namespace; line numbers in tracebacks are those of the file
RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for block in json.load(sys.stdin):
    exec(compile("\\n" * (block["line"] - 1) + block["source"], block["file"], "exec"), namespace)
"""


def python_blocks(path: Path):
    """``[{"file", "line", "source"}]``: the ```python blocks of ``path`` (``line``: the block's first line of
    code), minus those marked ``<!-- readme-test: skip ... -->``."""
    blocks, lines = [], path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"{path}:{index + 1}: code fence never closed")
        skipped = index > 0 and SKIP_MARK.search(lines[index - 1])
        if fence.group(1) == "python" and not skipped:
            name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
            blocks.append({"file": name, "line": index + 2,
                           "source": "\n".join(lines[index + 1:end]) + "\n"})
        index = end + 1
    return blocks


DOCUMENTS = [p for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] if p.is_file()]


def test_readme_has_python_examples():
    assert python_blocks(REPO / "README.md"), "README.md has no ```python block to run"


def run_blocks(blocks, cwd):
    return subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(blocks), capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.mark.parametrize("document", [pytest.param(p, id=str(p.relative_to(REPO))) for p in DOCUMENTS
                                      if python_blocks(p)])
def test_python_blocks_run(document, tmp_path):
    result = run_blocks(python_blocks(document), tmp_path)
    assert result.returncode == 0, f"a ```python block of {document.name} failed:\n{result.stderr[-4000:]}"


def test_blocks_share_a_namespace_and_failures_name_the_line(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("text\n```python\na = 1\n```\n```bash\nls\n```\n<!-- readme-test: skip needs a GPU -->\n"
                   "```python\nimport cuda_only\n```\n```python\nb = a + 1\nassert b == 3\n```\n")
    blocks = python_blocks(doc)
    assert [(b["file"], b["line"], b["source"]) for b in blocks] == [
        ("doc.md", 3, "a = 1\n"), ("doc.md", 13, "b = a + 1\nassert b == 3\n")]
    result = run_blocks(blocks, tmp_path)
    assert result.returncode == 1 and 'File "doc.md", line 14' in result.stderr and "AssertionError" in result.stderr
