"""Only ``pybuildx.ci`` knows CI variable names: every other module gets plain values from it.

Scans the source text (string literals, docstrings and comments: where a variable name is read
or described) so that a CI name slipping into a lower layer fails here, not in review.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "pybuildx"
# GitHub's and its runner's variables, GitLab's predefined CI_* variables.
CI_NAME = re.compile(r"\b(?:GITHUB|GITLAB|ACTIONS|RUNNER)_|\bCI_[A-Z]")
_TEXT_TOKENS = {tokenize.STRING, tokenize.COMMENT}
if hasattr(tokenize, "FSTRING_MIDDLE"):  # Python 3.12+ splits f-strings into tokens
    _TEXT_TOKENS.add(tokenize.FSTRING_MIDDLE)


def _modules_outside_ci() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "ci" and "_pb" not in path.parts
    )


def _text_of(token: tokenize.TokenInfo) -> str:
    text = token.string
    prefix = text[: len(text) - len(text.lstrip("rRbBuUfF"))]
    if token.type == tokenize.STRING and "f" in prefix.lower():
        # The {fields} of an f-string are code: Python names there are not variable names.
        text = re.sub(r"\{[^{}]*\}", "", text)
    return text


def _ci_names(path: Path) -> list[str]:
    found = []
    source = io.StringIO(path.read_text(encoding="utf-8"))
    for token in tokenize.generate_tokens(source.readline):
        if token.type in _TEXT_TOKENS:
            found += [f"line {token.start[0]}: {m[0]}" for m in CI_NAME.finditer(_text_of(token))]
    return found


def test_the_scan_covers_the_lower_layers_and_finds_the_names() -> None:
    scanned = {p.relative_to(PACKAGE).as_posix() for p in _modules_outside_ci()}
    for expected in ("credentials.py", "buildkit/secrets.py", "buildkit/cache.py", "cli/build.py"):
        assert expected in scanned
    for subpackage in ("buildkit", "images", "drivers", "transport", "builders"):
        assert any(name.startswith(f"{subpackage}/") for name in scanned)
    assert not any(name.startswith("ci/") for name in scanned)
    # The ci package does hold the names: the pattern matches what it must.
    assert _ci_names(PACKAGE / "ci" / "github.py")
    assert _ci_names(PACKAGE / "ci" / "gitlab.py")


def test_the_scan_flags_literals_and_comments_not_code(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        'CI_ENV_PREFIX = "BUILDER_NODE"\n'
        'name = f"{CI_ENV_PREFIX}_0"\n'
        'os.environ.get("GITLAB_CI")  # and ACTIONS_CACHE_URL\n'
        '"""Reads CI_JOB_ID."""\n'
    )
    assert _ci_names(module) == ["line 3: GITLAB_", "line 3: ACTIONS_", "line 4: CI_J"]


@pytest.mark.parametrize(
    "module", _modules_outside_ci(), ids=lambda p: p.relative_to(PACKAGE).as_posix()
)
def test_no_ci_variable_names_outside_the_ci_package(module: Path) -> None:
    assert _ci_names(module) == [], "read CI variables in pybuildx.ci and pass the values down"
