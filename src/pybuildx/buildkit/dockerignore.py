"""``.dockerignore`` patterns with the semantics of BuildKit (moby/patternmatcher + fsutil).

The daemon's Dockerfile frontend reads ``.dockerignore`` (or ``<Dockerfile>.dockerignore``) and
forwards its lines as ``exclude-patterns``; the *client* filters the context with them. So the
rules below must match Go's byte for byte, or a build sees files it should not (or misses some):

- a pattern is whitespace-trimmed and cleaned like Go's ``filepath.Clean``; ``!`` makes it an
  exception; the last matching pattern wins;
- a path is matched when it or one of its parent directories matches;
- ``*`` and ``?`` never cross ``/``; ``[...]`` classes as in ``filepath.Match``; ``\\`` escapes;
- ``**`` matches any number of directories (also none); ``a/**`` matches everything below ``a``;
  ``**/a`` matches ``a`` at any depth;
- a malformed pattern (unclosed ``[``, trailing ``\\``) is an error, never silently ignored.

The docker SDK's matcher (``docker.utils.build.PatternMatcher``, docker 7.x) was checked against
the table in tests/unit/test_dockerignore.py and differs: ``[^a]`` is not a negation (Python's
fnmatch wants ``[!a]``), ``\\`` does not escape, a leading ``/`` is stripped by the matcher itself,
and malformed patterns (``[``, trailing ``\\``, ``!``) are accepted silently. Hence this module.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from pybuildx.errors import ConfigError

__all__ = [
    "MatchInfo",
    "Pattern",
    "PatternMatcher",
    "go_clean",
    "parse_ignore_file",
]

# Regexp metacharacters that mean nothing in filepath.Match, so they are matched literally.
_REGEX_LITERALS = frozenset(".+()|{}$")
_GLOB_CHARS = "*[]?^\\"


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: the shortest equivalent slash path ('' becomes '.')."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def parse_ignore_file(text: str) -> list[str]:
    """The patterns of a ``.dockerignore`` file, processed as BuildKit's frontend does."""
    patterns: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


class _Kind(Enum):
    EXACT = 1
    PREFIX = 2
    SUFFIX = 3
    REGEX = 4


def _check_syntax(pattern: str) -> None:
    """Reject what Go's ``filepath.Match`` rejects: bad classes and a trailing backslash."""
    i, n = 0, len(pattern)

    def class_char(j: int) -> int:
        # One (possibly escaped) class character; returns the index after it.
        if j >= n or pattern[j] in "-]":
            raise ValueError
        if pattern[j] == "\\":
            j += 1
            if j >= n:
                raise ValueError
        j += 1
        if j >= n:
            raise ValueError
        return j

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError
            i += 2
        elif ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < n and pattern[i] == "]" and ranges > 0:
                    i += 1
                    break
                i = class_char(i)
                if pattern[i] == "-":
                    i = class_char(i + 1)
                ranges += 1
        else:
            i += 1


@dataclass(eq=False)
class Pattern:
    """One cleaned pattern; ``exclusion`` is True for ``!`` exceptions."""

    text: str
    exclusion: bool
    _kind: _Kind = field(init=False, default=_Kind.EXACT)
    _regex: re.Pattern[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._compile()

    def _compile(self) -> None:
        out: list[str] = []
        kind = _Kind.EXACT
        text = self.text
        i, n, step = 0, len(text), 0
        while i < n:
            ch = text[i]
            i += 1
            if ch == "*":
                if i < n and text[i] == "*":
                    i += 1
                    if i < n and text[i] == "/":
                        i += 1
                    if i >= n:
                        if kind is _Kind.EXACT:
                            kind = _Kind.PREFIX
                        else:
                            out.append(".*")
                            kind = _Kind.REGEX
                    else:
                        out.append("(.*/)?")
                        kind = _Kind.REGEX
                    if step == 0:
                        kind = _Kind.SUFFIX
                else:
                    out.append("[^/]*")
                    kind = _Kind.REGEX
            elif ch == "?":
                out.append("[^/]")
                kind = _Kind.REGEX
            elif ch in _REGEX_LITERALS:
                out.append("\\" + ch)
            elif ch == "\\":
                if i < n:
                    out.append("\\" + text[i])
                    i += 1
                    kind = _Kind.REGEX
                else:
                    out.append("\\\\")
            elif ch in "[]":
                out.append(ch)
                kind = _Kind.REGEX
            else:
                # Passed through as Go does: '^' stays a class negation or an anchor.
                out.append(ch)
            step += 1
        self._kind = kind
        if kind is _Kind.REGEX:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                try:
                    self._regex = re.compile("".join(out) + r"\Z")
                except re.error as exc:
                    raise ConfigError(f"invalid ignore pattern {self.text!r}: {exc}") from None

    def match(self, path: str) -> bool:
        if self._kind is _Kind.EXACT:
            return path == self.text
        if self._kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self._kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self._regex is not None
        return self._regex.match(path) is not None

    def without_trailing_glob(self) -> str:
        """The pattern minus a trailing ``/**`` or ``/*`` (fsutil's prefix shortcut)."""
        text = self.text.removesuffix("/**")
        return text.removesuffix("/*")

    def __str__(self) -> str:
        return ("!" if self.exclusion else "") + self.text


@dataclass(frozen=True)
class MatchInfo:
    """Per-pattern results for a directory, reused for its children (fsutil's shortcut)."""

    parent_matched: tuple[bool, ...] = ()


class PatternMatcher:
    """An ordered list of patterns; ``!`` patterns re-include what earlier ones excluded."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        self.exclusions = False
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise ConfigError('illegal exclusion pattern: "!"')
                text = text[1:]
                self.exclusions = True
            try:
                _check_syntax(text)
            except ValueError:
                raise ConfigError(
                    f"invalid ignore pattern {raw.strip()!r}: syntax error in pattern",
                    hint="escape literal [ ] \\ with a backslash",
                ) from None
            self.patterns.append(Pattern(text, exclusion))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches_or_parent_matches(self, path: str) -> bool:
        """True when ``path`` (slash-separated, relative) or one of its parents is matched."""
        return self.matches_using_parent_results(path, MatchInfo())[0]

    def matches_using_parent_results(self, path: str, parent: MatchInfo) -> tuple[bool, MatchInfo]:
        """The walk's fast path: each pattern's result for the parent directory carries over."""
        if not parent.parent_matched:
            # Nothing known about the parents (top level, or a filtered-out walk start).
            results = []
            matched = False
            parent_path = path.rpartition("/")[0]
            parent_dirs = parent_path.split("/") if parent_path else []
            for pattern in self.patterns:
                hit = False
                if pattern.exclusion == matched:
                    hit = pattern.match(path)
                    if not hit:
                        for depth in range(1, len(parent_dirs) + 1):
                            if pattern.match("/".join(parent_dirs[:depth])):
                                hit = True
                                break
                results.append(hit)
                if hit:
                    matched = not pattern.exclusion
            return matched, MatchInfo(tuple(results))
        results = []
        matched = False
        for pattern, parent_hit in zip(self.patterns, parent.parent_matched, strict=True):
            hit = parent_hit
            if not hit:
                if pattern.exclusion != matched:
                    results.append(False)
                    continue
                hit = pattern.match(path)
            results.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, MatchInfo(tuple(results))

    def only_literal(self, *, exclusions: bool) -> bool:
        """True when no pattern of the kind (``!`` ones if ``exclusions``) has glob characters.

        A trailing ``/*`` or ``/**`` does not count: fsutil's prefix shortcut still applies.
        """
        return not any(
            p.exclusion == exclusions and any(c in p.without_trailing_glob() for c in _GLOB_CHARS)
            for p in self.patterns
        )

    def could_reinclude_below(self, directory: str, *, exclusions: bool) -> bool:
        """Whether a literal pattern (``!`` ones if ``exclusions``) names something inside."""
        prefix = directory + "/"
        return any(
            p.exclusion == exclusions and (p.without_trailing_glob() + "/").startswith(prefix)
            for p in self.patterns
        )
