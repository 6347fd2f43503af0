"""The README is a front door and the documents under docs/ hold the rest (issue #30): README.md has at most 300
lines, every relative link (and #anchor) of README.md and docs/*.md resolves, and the README's documentation map
links every docs/*.md once. Plain text, no torch: the checks read Markdown only.

Anchors follow GitHub's rule: a heading's text, lowercased, without anything but letters, digits, `_`, `-` and
spaces, spaces made hyphens; a repeated heading gets -1, -2, ...
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 300

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[([^\]^][^\]]*)\]:\s*<?(\S+?)>?(?:\s.*)?$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def prose_lines(text: str):
    """(line number, line) of every line outside fenced code blocks."""
    fence = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                and not line.strip().strip(fence[0]):
            fence = None
        elif fence is None:
            yield n, line


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's Markdown text."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's (or image's) text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def links(path: Path):
    """(line number, target) of every link and image in a Markdown file, outside code."""
    for n, line in prose_lines(path.read_text(encoding="utf-8")):
        m = REFERENCE_DEF.match(line)
        if m:
            yield n, m.group(2)
            continue
        for m in INLINE_LINK.finditer(CODE_SPAN.sub("", line)):
            yield n, m.group(1)


def resolve(path: Path, target: str) -> tuple[Path, str]:
    """The file a relative link points to, and its anchor ('' when none)."""
    file, _, anchor = target.partition("#")
    return ((path.parent / unquote(file)).resolve() if file else path), unquote(anchor)


def broken_links(root: Path, files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        for n, target in links(path):
            if not target or EXTERNAL.match(target):
                continue
            where = f"{path.relative_to(root)}:{n}: {target}"
            file, anchor = resolve(path, target)
            if not file.exists():
                problems.append(f"{where}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                problems.append(f"{where}: no heading with anchor #{anchor} in {file.name}")
    return problems


def documents(root: Path) -> list[Path]:
    return sorted((root / "docs").glob("*.md"))


def readme_links_per_doc(root: Path) -> dict[str, int]:
    readme = root / "README.md"
    counts = {d.name: 0 for d in documents(root)}
    for _, target in links(readme):
        if target and not EXTERNAL.match(target):
            file, _ = resolve(readme, target)
            if file.parent == (root / "docs").resolve() and file.name in counts:
                counts[file.name] += 1
    return counts


def readme_lines(root: Path) -> int:
    return len((root / "README.md").read_text(encoding="utf-8").splitlines())


def markdown_files(root: Path) -> list[Path]:
    return [root / "README.md", *documents(root)]


def test_the_readme_is_a_front_door():
    lines = readme_lines(ROOT)
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move a part to docs/"


def test_every_relative_link_and_anchor_resolves():
    problems = broken_links(ROOT, markdown_files(ROOT))
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_document_once():
    counts = readme_links_per_doc(ROOT)
    assert counts, "no docs/*.md found"
    wrong = [f"docs/{name}: linked {n} times from README.md (once, in its Documentation map)"
             for name, n in counts.items() if n != 1]
    assert not wrong, "\n".join(wrong)


def test_anchors_follow_githubs_rule():
    assert slug("From `roadmap run` to `optimizer.step()`") == "from-roadmap-run-to-optimizerstep"
    assert slug("Measuring a GPU: `scripts/gpu-check.sh`") == "measuring-a-gpu-scriptsgpu-checksh"
    assert slug("Several GPUs, or a Slurm cluster") == "several-gpus-or-a-slurm-cluster"
    assert slug("Large kernels at 28 px — **why** [they lose](x.md)") == "large-kernels-at-28-px--why-they-lose"
    assert slug("`step_name` and the_rest") == "step_name-and-the_rest"


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A planted broken file link, a wrong anchor, a heading inside a code block, a doc linked twice and one not at
    all, and a README one line too long: each is reported."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\n## Same\n\n## Same\n\n```bash\n# not a heading\n[x](nowhere.md)\n```\n"
                               "See [b](b.md#b), [the second](#same-1), [code](#not-a-heading), [gone](gone.md)\n"
                               "and `[not a link](nowhere.md)`.\n[ref]: missing.png\n")
    (docs / "b.md").write_text("# B\n\n[home](../README.md#readme), [self](#b)\n")
    (docs / "c.md").write_text("# C\n")
    (tmp_path / "README.md").write_text("# Readme\n\n[a](docs/a.md) [a again](docs/a.md#a) [b](docs/b.md)\n"
                                        + "line\n" * (MAX_README_LINES - 2))
    problems = broken_links(tmp_path, markdown_files(tmp_path))
    assert problems == ["docs/a.md:11: #not-a-heading: no heading with anchor #not-a-heading in a.md",
                        "docs/a.md:11: gone.md: no such file",
                        "docs/a.md:13: missing.png: no such file"], problems
    assert readme_links_per_doc(tmp_path) == {"a.md": 2, "b.md": 1, "c.md": 0}
    assert readme_lines(tmp_path) == MAX_README_LINES + 1
