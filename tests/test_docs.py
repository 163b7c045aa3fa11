"""The docs stand alone: every relative link in the README and the docs names a file (and a
heading, for ``#anchor``) of this repository, and no link points outside it. Run with
`python -m pytest tests/test_docs.py -q`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import slnn

ROOT = Path(slnn.__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md"),
               *(p for p in ROOT.glob("*/README.md") if not p.parent.name.startswith("."))])
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
WEB = ("http://", "https://")


def links(path: Path) -> list[str]:
    """The targets of the Markdown links and images in ``path``, code left out."""
    text = re.sub(r"^(```|~~~).*?^\1", "", path.read_text(), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^(```|~~~).*?^\1", "", path.read_text(), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#+\s+(.*)$", text, re.M)}


def test_there_are_docs_with_links():
    assert ROOT / "README.md" in DOCS and ROOT / "docs" / "background.md" in DOCS
    assert "docs/background.md" in links(ROOT / "README.md")


def problems(doc: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the links of ``doc``: one sentence each."""
    out = []
    for target in links(doc):
        if target.startswith(WEB):
            continue  # a public address: reachable from any clone
        if ":" in target.split("/")[0] or target.startswith(("/", "~")):
            out.append(f"{target} is not a path inside the repository")
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.is_relative_to(root):
            out.append(f"{target} points outside the repository")
        elif not file.exists():
            out.append(f"{target} does not exist")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            out.append(f"{target}: no such heading")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_in_the_repository_and_names_what_is_there(doc):
    assert problems(doc) == []


def test_the_check_finds_each_kind_of_bad_link(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "there.md").write_text("# A heading\n")
    (tmp_path / "outside.md").write_text("")
    doc = repo / "README.md"
    doc.write_text("[ok](docs/there.md) [ok](docs/there.md#a-heading) [ok](https://x.org) "
                   "`[not a link](../code.md)`\n[a](../outside.md) [b](/etc/hosts) "
                   "[c](file:///etc/hosts) [d](docs/missing.md) [e](docs/there.md#nope)\n")
    assert problems(doc, repo) == [
        "../outside.md points outside the repository", "/etc/hosts is not a path inside the "
        "repository", "file:///etc/hosts is not a path inside the repository",
        "docs/missing.md does not exist", "docs/there.md#nope: no such heading"]
