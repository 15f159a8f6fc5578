"""``--attest``, ``--provenance`` and ``--sbom`` → FrontendAttrs ``attest:<type>``.

As buildx: ``--attest type=sbom,generator=img`` passes its other fields as CSV; ``disabled=true``
drops the type; ``--provenance``/``--sbom`` take a bool or the fields (``mode=max``). Unless turned
off (``--provenance false`` or ``BUILDX_NO_DEFAULT_ATTESTATIONS``), a build gets
``attest:provenance=mode=min,inline-only=true`` like buildx's default.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pybuildx.config import parse_csv_options
from pybuildx.errors import ConfigError

__all__ = [
    "DEFAULT_PROVENANCE",
    "Attestation",
    "attestation_frontend_attrs",
    "parse_attest",
    "parse_attest_shorthand",
]

_TYPES = ("provenance", "sbom")
DEFAULT_PROVENANCE = {"mode": "min", "inline-only": "true"}
_TRUE = ("", "1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Attestation:
    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    disabled: bool = False

    def value(self) -> str:
        """The attrs as one CSV line (quoted where a value holds a comma)."""
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(f"{k}={v}" for k, v in self.attrs.items())
        return out.getvalue()


def parse_attest(text: str) -> Attestation:
    """``type=<provenance|sbom>[,disabled=true][,<key>=<value>...]``."""
    attrs = parse_csv_options(text, what="attest")
    kind = attrs.pop("type", "")
    if kind not in _TYPES:
        raise ConfigError(
            f"invalid attest {text!r}: type must be provenance or sbom",
            hint="for example type=provenance,mode=max or type=sbom",
        )
    disabled = attrs.pop("disabled", "false").lower()
    if disabled not in _TRUE + _FALSE:
        raise ConfigError(f"invalid attest {text!r}: disabled must be true or false")
    return Attestation(kind, attrs, disabled in _TRUE)


def parse_attest_shorthand(kind: str, text: str) -> Attestation:
    """``--provenance`` / ``--sbom``: ``true``, ``false`` or the attestation's fields."""
    value = text.strip()
    if value.lower() in _TRUE:
        return Attestation(kind)
    if value.lower() in _FALSE:
        return Attestation(kind, disabled=True)
    return parse_attest(f"type={kind},{value}")


def attestation_frontend_attrs(
    attests: Iterable[str] = (),
    *,
    provenance: str | None = None,
    sbom: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``attest:*`` FrontendAttrs for a build; later values for one type win."""
    env = os.environ if environ is None else environ
    chosen: dict[str, Attestation] = {}
    for text in attests:
        item = parse_attest(text)
        chosen[item.type] = item
    if provenance is not None:
        chosen["provenance"] = parse_attest_shorthand("provenance", provenance)
    if sbom is not None:
        chosen["sbom"] = parse_attest_shorthand("sbom", sbom)
    no_defaults = env.get("BUILDX_NO_DEFAULT_ATTESTATIONS", "").lower() not in ("", *_FALSE)
    if "provenance" not in chosen and not no_defaults:
        chosen["provenance"] = Attestation("provenance", dict(DEFAULT_PROVENANCE))
    return {f"attest:{a.type}": a.value() for a in chosen.values() if not a.disabled}
