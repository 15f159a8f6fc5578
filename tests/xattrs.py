"""Extended-attribute helpers shared by the unit and integration tests."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tests.testbed import need

# struct vfs_cap_data, revision 2, effective flag set: permitted = CAP_NET_BIND_SERVICE (10).
NET_BIND_SERVICE_EP = bytes.fromhex("0100000200040000000000000000000000000000")


def xattrs_of(path: bytes | Path) -> dict[bytes, bytes]:
    """The extended attributes of ``path`` itself (not following a symlink)."""
    return {
        os.fsencode(name): os.getxattr(path, name, follow_symlinks=False)
        for name in os.listxattr(path, follow_symlinks=False)
    }


def need_user_xattrs(path: Path) -> None:
    """Skip (with the reason; fail in CI, see ``need``) where the file system of ``path`` has no
    user xattrs."""
    try:
        os.setxattr(path, "user.probe", b"")
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        need(False, f"no user xattrs on {path}")
    else:
        os.removexattr(path, "user.probe")
