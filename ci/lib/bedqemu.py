"""QEMU arm64 emulation via binfmt_misc, with the F flag so it also works inside containers."""

from __future__ import annotations

from pathlib import Path

from bedcommon import BedError, log, run

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # shipped by Debian's qemu-user-static


def _entry_flags(entry: Path) -> str:
    for line in entry.read_text().splitlines():
        if line.startswith("flags:"):
            return line.split(":", 1)[1].strip()
    return ""


def ensure_arm64_binfmt(arm64_busybox: Path) -> str:
    """Register qemu-aarch64 if needed, prove it with arm64 busybox; return the entry's flags."""
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / "qemu-aarch64"
    if entry.exists() and "F" not in _entry_flags(entry):
        log("qemu-aarch64 is registered without the F flag; re-registering")
        entry.write_text("-1")
    if not entry.exists():
        rule = QEMU_CONF.read_text().strip()
        if "F" not in rule.rsplit(":", 1)[1]:  # the last field holds the flags
            rule += "F"
        (BINFMT / "register").write_text(rule)
    proc = run([str(arm64_busybox), "uname", "-m"], capture=True, check=False)
    if proc.returncode != 0 or proc.stdout.strip() != "aarch64":
        raise BedError(
            f"arm64 emulation does not work: {proc.stdout.strip()} {proc.stderr.strip()}"
        )
    return _entry_flags(entry)
