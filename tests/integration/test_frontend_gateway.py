"""External Dockerfile frontends: a ``# syntax=`` line, and ``BUILDKIT_SYNTAX`` (gateway.v0).

Offline, the frontend image is made from BuildKit's own dockerfile-frontend binary, which
``ci/testbed up`` builds from the Go module proxy into /var/cache/pybuildx, and pushed to the
plain bed registry.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.localbuild import buildctl_export
from tests.integration.pushing import cli_env, run_build
from tests.testbed import Daemon, need

pytestmark = pytest.mark.integration

FRONTEND_VERSION = "v0.18.2"
FRONTEND_BINARY = Path(
    f"/var/cache/pybuildx/dockerfile-frontend-{FRONTEND_VERSION}/dockerfile-frontend"
)
_IMAGE_DOCKERFILE = """FROM scratch
COPY dockerfile-frontend /bin/dockerfile-frontend
LABEL moby.buildkit.frontend.network.none="true"
LABEL moby.buildkit.frontend.caps="{caps}"
ENTRYPOINT ["/bin/dockerfile-frontend"]
""".format(
    caps="moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,"
    "moby.buildkit.frontend.contexts"
)


@pytest.fixture(scope="session")
def frontend_image(
    registry: str, current_daemon: Daemon, tmp_path_factory: pytest.TempPathFactory
) -> str:
    need(
        FRONTEND_BINARY.is_file(),
        f"no offline Dockerfile frontend image can be made: {FRONTEND_BINARY} is missing "
        "(ci/testbed up builds it)",
    )
    ctx = tmp_path_factory.mktemp("frontend")
    (ctx / "dockerfile-frontend").write_bytes(FRONTEND_BINARY.read_bytes())
    (ctx / "dockerfile-frontend").chmod(0o755)
    (ctx / "Dockerfile").write_text(_IMAGE_DOCKERFILE)
    ref = f"{registry}/pybuildx-test/dockerfile-frontend:{FRONTEND_VERSION}"
    buildctl_export(current_daemon, ctx, ctx, f"type=image,name={ref},push=true")
    return ref


def _context(tmp_path: Path, first_line: str = "") -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text(uuid.uuid4().hex)
    (ctx / "Dockerfile").write_text(f"{first_line}FROM scratch\nCOPY hello.txt /hello.txt\n")
    return ctx


def test_syntax_line_runs_the_frontend_image(
    daemon: Daemon, frontend_image: str, tmp_path: Path
) -> None:
    ctx = _context(tmp_path, f"# syntax={frontend_image}\n")
    result = run_build(daemon, str(ctx), env=cli_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    assert frontend_image in result.stderr  # the daemon resolved and ran our frontend image


def test_buildkit_syntax_build_arg_uses_the_gateway(
    daemon: Daemon, frontend_image: str, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    result = run_build(
        daemon,
        str(ctx),
        "--build-arg",
        f"BUILDKIT_SYNTAX={frontend_image}",
        env=cli_env(tmp_path / "home"),
    )
    assert result.returncode == 0, result.stderr
    assert frontend_image in result.stderr


def test_unreachable_frontend_image_fails_clearly(daemon: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "# syntax=127.0.0.1:9/none/frontend:1\n")
    result = run_build(daemon, str(ctx), env=cli_env(tmp_path / "home"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "127.0.0.1:9/none/frontend" in errors[0], result.stderr
