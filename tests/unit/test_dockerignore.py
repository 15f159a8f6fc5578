"""The .dockerignore corner-case table: BuildKit (moby/patternmatcher) semantics."""

from __future__ import annotations

import pytest

from pybuildx.buildkit.dockerignore import (
    MatchInfo,
    PatternMatcher,
    go_clean,
    parse_ignore_file,
)
from pybuildx.errors import ConfigError

# (patterns, path, excluded?)
CASES = [
    # '*' and '?' never cross '/'
    (["*.go"], "a.go", True),
    (["*.go"], "dir/a.go", False),
    (["?.txt"], "a.txt", True),
    (["?.txt"], "ab.txt", False),
    (["a?b"], "a/b", False),
    (["*/a"], "x/a", True),
    (["*/a"], "a", False),
    (["*/a"], "x/y/a", False),
    # '**' spans directories, also none
    (["**/*.go"], "a.go", True),
    (["**/*.go"], "dir/sub/a.go", True),
    (["**/foo"], "foo", True),
    (["**/foo"], "x/y/foo", True),
    (["**/foo"], "xfoo", False),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["a/**/b"], "a/xb", False),
    (["a/**"], "a", False),
    (["a/**"], "a/b", True),
    (["a/**"], "a/b/c", True),
    (["foo**"], "foobar/x", True),
    (["**"], "anything/at/all", True),
    # a parent match excludes everything below
    (["dir"], "dir/sub/file", True),
    (["dir/*"], "dir", False),
    (["dir/*"], "dir/a/b", True),
    (["dir"], "dirt", False),
    # cleaning: trailing slash, './', '..', surrounding blanks
    (["dir/"], "dir/x", True),
    (["./a"], "a", True),
    (["a/../b"], "b", True),
    (["  spaced  "], "spaced", True),
    (["a//b"], "a/b", True),
    # a leading '/' is only stripped by the .dockerignore reader, not by the matcher
    (["/dir"], "dir", False),
    # exceptions: last match wins, parents count for exceptions too
    (["*", "!keep"], "keep", False),
    (["*", "!keep"], "other", True),
    (["!keep", "*"], "keep", True),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/keep/deep", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["dir", "!dir/keep", "dir/keep/no"], "dir/keep/no", True),
    # classes and escapes as in filepath.Match
    (["[a-c].txt"], "b.txt", True),
    (["[a-c].txt"], "d.txt", False),
    (["[^a].txt"], "b.txt", True),
    (["[^a].txt"], "a.txt", False),
    (["[\\]]"], "]", True),
    (["\\*.txt"], "*.txt", True),
    (["\\*.txt"], "a.txt", False),
    # regexp metacharacters are literal
    (["a.b"], "axb", False),
    (["a.b"], "a.b", True),
    (["foo+bar"], "foo+bar", True),
    (["(x)|{y}$"], "(x)|{y}$", True),
    # non-ASCII names
    (["é*"], "été", True),
    (["**/ünï"], "d/ünï", True),
    # names that are not UTF-8 arrive surrogate-escaped
    (["*.bin"], b"\xff.bin".decode("utf-8", "surrogateescape"), True),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_corner_cases(patterns: list[str], path: str, excluded: bool) -> None:
    assert PatternMatcher(patterns).matches_or_parent_matches(path) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_parent_results_agree_with_full_matching(
    patterns: list[str], path: str, excluded: bool
) -> None:
    # The walk matches top-down, reusing each directory's results for its children.
    matcher = PatternMatcher(patterns)
    info = MatchInfo()
    parts = path.split("/")
    result = False
    for depth in range(1, len(parts) + 1):
        result, info = matcher.matches_using_parent_results("/".join(parts[:depth]), info)
    assert result is excluded


@pytest.mark.parametrize("bad", ["[", "a\\", "[]a]", "[-a]", "[a-]", "!", "x[a"])
def test_malformed_patterns_are_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        PatternMatcher([bad])


def test_ignore_file_processing() -> None:
    text = (
        "\ufeff# comment\n\n  /abs/path  \n!  /keep/me\n./x/../y/\n#notcomment?\n  # indented\n/\n"
    )
    assert parse_ignore_file(text) == ["abs/path", "!keep/me", "y", "/"]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("", "."),
        ("a/./b", "a/b"),
        ("../a", "../a"),
        ("/../a", "/a"),
        ("a/b/..", "a"),
        ("//a", "/a"),
    ],
)
def test_go_clean(raw: str, clean: str) -> None:
    assert go_clean(raw) == clean


def test_exclusions_and_literal_exception_shortcut() -> None:
    literal = PatternMatcher(["dir", "!dir/keep"])
    assert literal.exclusions
    assert literal.only_literal(exclusions=True)
    assert literal.could_reinclude_below("dir", exclusions=True)
    assert not literal.could_reinclude_below("other", exclusions=True)
    glob = PatternMatcher(["*", "!*/keep"])
    assert not glob.only_literal(exclusions=True)
