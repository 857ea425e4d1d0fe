"""The docs hold: generated references match the code, relative links resolve, cited repository paths exist.

What is checked, in README.md and docs/*.md (fenced code blocks excluded):
- ``docs/flags.md`` and ``docs/layout.md`` are what ``python docs/generate.py`` writes now;
- every flag that a hand-written table explains (a row starting with a backticked ``--flag``) is a flag of
  ``train_CSAKD.py`` or ``test_CSAKD.py``, so an explanation cannot outlive its flag;
- every relative Markdown link points to an existing file and, for a ``#anchor``, to a heading of that file
  (GitHub's anchor rule);
- every inline-code span that names a Python name of this repository (``engine.cotrainer.CoTrainer.step``,
  ``utils.config.Option``) names a module that exists and, after it, a name that module defines (read with
  ``ast``, nothing imported; deeper attributes are not checked);
- every inline-code span that names a repository path (``engine/train.py``, ``configs/x.yaml``,
  ``tests/test_faults.py::test_x``) names one that exists. A path counts as a repository path when its first
  component is a top-level entry of the repository; outputs (``results/``, ``checkpoints/``) and placeholders
  (``<run>/``, ``*.pth``, ``{seed}``) are not. A page citing another repository's file names it without our
  top-level folder (``KQD_Large.py`` of the official code, not ``models/KQD_Large.py``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCE_ROOTS = {"models", "data", "losses", "engine", "utils", "configs", "benchmarks", "tests", "docs", ".ci"}

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(\(\))?$")
# Names that the docs cite from other code bases and that share a first component with our packages.
NOT_OURS = {"models.dcsn2d_light"}  # docs/csakd.md: a module the official code imports but does not ship
PATH_TOKEN = re.compile(r"^\.?[\w.\-]+(/[\w.\-]*)*(::[\w\[\]\-.]+)*(:\d+(-\d+)?)?$")


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (their text is code, not citations or links)."""
    out, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        out.append("" if fenced else line)
    return "\n".join(out)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (letters, digits, ``-``, ``_`` kept),
    spaces to hyphens; inline-code backticks and link syntax removed first."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``page`` (repeated headings get ``-1``, ``-2``, …)."""
    counts: dict[str, int] = {}
    found = set()
    for line in _prose(page).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            n = counts.get(slug, 0)
            found.add(f"{slug}-{n}" if n else slug)
            counts[slug] = n + 1
    return found


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{_rel(page)}: link to missing {target}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{_rel(page)}: link to missing anchor {target}")
    return broken


def _cited_paths(page: Path) -> list[str]:
    """Repository paths that ``page`` cites in inline code."""
    top = {p.name for p in ROOT.iterdir()} | SOURCE_ROOTS
    cited = []
    for span in CODE_SPAN.findall(_prose(page)):
        token = span.strip()
        if not PATH_TOKEN.match(token) or ("/" not in token and not (ROOT / token).suffix):
            continue
        path = re.sub(r"(::.*|:\d+(-\d+)?)$", "", token)
        first = path.split("/")[0]
        if first in top and (first in SOURCE_ROOTS or "/" not in path):
            cited.append(path)
    return cited


def _defined(module: Path) -> set[str]:
    """Top-level names a module defines or imports."""
    names = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _unresolved_name(token: str) -> str | None:
    """Why a dotted name of one of our packages does not resolve, or None when it does (or is not ours)."""
    parts = token.removesuffix("()").split(".")
    here = ROOT / parts[0]
    if not (here / "__init__.py").is_file() or token in NOT_OURS:
        return None
    for i, name in enumerate(parts[1:], 1):
        if (here / name / "__init__.py").is_file():
            here = here / name
        elif (here / f"{name}.py").is_file():
            rest = parts[i + 1:i + 2]
            module = here / f"{name}.py"
            return f"{token}: {rest[0]} is not in {_rel(module)}" if rest and rest[0] not in _defined(module) else None
        else:
            return None if name in _defined(here / "__init__.py") else f"{token}: {name} is not in {_rel(here)}"
    return None


def _unresolved_names(page: Path) -> list[str]:
    spans = (s.strip() for s in CODE_SPAN.findall(_prose(page)))
    return [why for s in spans if DOTTED.match(s) and (why := _unresolved_name(s))]


def test_generated_references_are_fresh():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.stale() == [], "stale generated docs: run python docs/generate.py"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    assert _broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_cited_repository_paths_exist(page):
    missing = [p for p in _cited_paths(page) if not (ROOT / p).exists()]
    assert missing == [], f"{_rel(page)} cites missing paths"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_cited_python_names_exist(page):
    assert _unresolved_names(page) == [], f"{_rel(page)} cites missing modules or names"


def _explained_flags(page: Path) -> list[str]:
    """Flags named in the first column of the page's tables."""
    rows = (line.split("|")[1] for line in _prose(page).splitlines() if line.startswith("| `--"))
    return [flag for cell in rows for flag in re.findall(r"`(--\w+)", cell)]


def test_explained_flags_exist():
    config = importlib.import_module("engine.flags")
    known = {o for build in (config.build_train_parser, config.build_test_parser) for a in build()._actions
             for o in a.option_strings}
    unknown = {_rel(p): sorted(set(_explained_flags(p)) - known) for p in PAGES}
    assert {page: flags for page, flags in unknown.items() if flags} == {}


def test_the_checks_catch_what_they_promise(tmp_path):
    """A broken link, a missing anchor, a missing cited path or name and a table's flag are each found; code
    blocks are not read (guards the checks above)."""
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n## Second `one`\n\n## A title\n\n"
                    "[ok](#second-one) [bad](#nope) [file](missing.md)\n"
                    "`engine/no_such_module.py` `engine/train.py` `results/x.json`\n"
                    "`engine.train.no_such_name` `engine.no_such_module.x` `engine.cotrainer.CoTrainer.step`\n"
                    "\n| `--epochs` / `--no_such_flag` | 1 | meaning |\n"
                    "\n```\n[code](gone.md) `engine/gone.py`\n```\n", encoding="utf-8")
    assert anchors(page) == {"a-title", "second-one", "a-title-1"}
    assert _broken_links(page) == ["page.md: link to missing anchor #nope", "page.md: link to missing missing.md"]
    assert _cited_paths(page) == ["engine/no_such_module.py", "engine/train.py"]
    assert _unresolved_names(page) == ["engine.train.no_such_name: no_such_name is not in engine/train.py",
                                       "engine.no_such_module.x: no_such_module is not in engine"]
    assert _explained_flags(page) == ["--epochs", "--no_such_flag"]
