"""BUILDKIT_SYNTAX switches the request to gateway.v0 with that frontend image (as buildx)."""

from __future__ import annotations

from pathlib import Path

from pybuildx.buildkit.solve import solve_request
from pybuildx.buildspec import parse_build_flags


def test_buildkit_syntax_selects_the_gateway(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    image = "127.0.0.1:5000/frontends/dockerfile:1"
    spec = parse_build_flags(context=str(tmp_path), build_args=[f"BUILDKIT_SYNTAX={image}"])
    request = solve_request(spec, ref="r", session_id="s")
    assert request.Frontend == "gateway.v0"
    assert request.FrontendAttrs["source"] == image
    # cmdline keeps the frontend image from forwarding to itself again.
    assert request.FrontendAttrs["cmdline"] == image
    assert request.FrontendAttrs["build-arg:BUILDKIT_SYNTAX"] == image


def test_without_it_the_builtin_frontend_is_used(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("# syntax=docker/dockerfile:1\nFROM scratch\n")
    request = solve_request(parse_build_flags(context=str(tmp_path)), ref="r", session_id="s")
    # The daemon's dockerfile.v0 itself forwards to the image named by a # syntax= line.
    assert request.Frontend == "dockerfile.v0"
    assert "source" not in request.FrontendAttrs
