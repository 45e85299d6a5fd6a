"""Every fenced ```python block in docs/*.md runs, as written, and does not raise.

Each block runs on its own (a fresh namespace) in an empty directory that holds what the wallet
walk-through downloads in its steps 4 and 5: `lights-dataset/` (a render task's export) and
`lights-model.pt` (an exported training state), made here by the real code. A block that cannot
run here is marked on the line just before its fence with

    <!-- docs-test: skip (the reason) -->

(an HTML comment: invisible on a rendered page); a marker without a reason fails this test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*(\((?P<why>[^)]*)\))?\s*-->")


@dataclass(frozen=True)
class Example:
    doc: str
    line: int  # of the opening fence, 1-based
    code: str
    skip: str | None  # the reason, when marked


def examples() -> list[Example]:
    out = []
    for path in sorted(DOCS.glob("*.md")):
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```python":
                start, body = i, []
                i += 1
                while i < len(lines) and lines[i].strip() != "```":
                    body.append(lines[i])
                    i += 1
                marker = SKIP.search(lines[start - 1]) if start else None
                skip = None
                if marker:
                    skip = (marker.group("why") or "").strip()
                    assert skip, (
                        f"{path.name}:{start}: a docs-test skip marker needs a reason in "
                        "parentheses"
                    )
                out.append(Example(path.name, start + 1, "\n".join(body) + "\n", skip))
            i += 1
    return out


EXAMPLES = examples()


def test_the_docs_have_examples():
    assert {e.doc for e in EXAMPLES} >= {"wallet.md", "datasets.md", "architecture.md"}
    assert all(e.code.strip() for e in EXAMPLES)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    """lights-dataset/ and lights-model.pt, as `pouw task result` writes them (real render and
    training)."""
    from useful_work.export_dataset import export_render_task
    from useful_work.export_model import export_model
    from useful_work.render_task import RenderTask
    from useful_work.specs import RenderSpec, TrainSpec
    from useful_work.train_task import TrainTask

    root = tmp_path_factory.mktemp("downloads")
    spec = RenderSpec(units=4, images_per_unit=16, image_size=32)
    seeds = [bytes([7, u]) * 16 for u in range(spec.units)]
    state, digests = RenderTask(spec).initial_state(), []
    for s in seeds:
        state, d = RenderTask(spec).run_unit(state, s)
        digests.append(d)
    export_render_task(root / "lights-dataset", spec, seeds, digests)
    train = TrainSpec(units=4, steps_per_unit=2, batch_size=16, image_size=32)
    task = TrainTask(train)
    state = task.initial_state()
    for u in range(train.units):
        state, _ = task.run_unit(state, bytes([9, u]) * 16)
    export_model(state, train, root / "lights-model.pt")
    return root


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.doc}:{e.line}" for e in EXAMPLES])
def test_doc_example_runs(example: Example, downloads, tmp_path, monkeypatch, capsys):
    if example.skip is not None:
        pytest.skip(f"marked in {example.doc}: {example.skip}")
    import shutil

    shutil.copytree(downloads / "lights-dataset", tmp_path / "lights-dataset")
    shutil.copy(downloads / "lights-model.pt", tmp_path / "lights-model.pt")
    monkeypatch.chdir(tmp_path)
    code = compile(example.code, f"{example.doc}:{example.line}", "exec")
    exec(code, {"__name__": "__docs_example__"})  # noqa: S102 - the project's own documentation
    printed = capsys.readouterr().out
    if "print(" in example.code:
        assert printed.strip(), "the example prints nothing"
