"""The CI surfaces: what GitHub Actions and GitLab CI offer a run, read from their variables.

Only this package knows CI variable names. The CLI calls ``detect(os.environ)`` once and hands
the plain values it finds down to the pipeline and the BuildKit client, which never read them.
"""

from pybuildx.ci.detect import CiEnvironment, CiKind, detect

__all__ = ["CiEnvironment", "CiKind", "detect"]
