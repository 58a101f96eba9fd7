"""Client certificate checks: the chain must lead to one of the application's trust anchors (§5).

Trust anchors are ``spec.trustAnchors.anchors[].certificate`` (base64 of a PEM certificate, Drogue's form;
plain PEM text is accepted too). Distinguished names are rendered like Rust's ``x509-parser``
(``CN=dev1, O=Drogue IoT, OU=app1``: attributes in encoded order).
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature


def dn_string(name: x509.Name) -> str:
    return ", ".join(f"{attr.rfc4514_attribute_name}={attr.value!s}" for attr in name)


def _load_anchor(text: Any) -> list[x509.Certificate]:
    if not isinstance(text, str):
        raise ValueError("certificate must be a string (base64 of a PEM certificate)")
    pem = text.encode() if "-----BEGIN" in text else base64.b64decode(text, validate=False)
    certs = x509.load_pem_x509_certificates(pem)
    if not certs:
        raise ValueError("no certificate found")
    return certs


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def trust_anchor_status(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """``status.trustAnchors`` as Drogue's server writes it from ``spec.trustAnchors``: one entry per anchor,
    ``{"valid": {subject, certificate, notBefore, notAfter}}`` or ``{"invalid": {error, message}}``.
    None when the spec has no trust anchors."""
    section = spec.get("trustAnchors")
    if not isinstance(section, dict):
        return None
    anchors = section.get("anchors")
    out: list[dict[str, Any]] = []
    for anchor in anchors if isinstance(anchors, list) else []:
        text = anchor.get("certificate") if isinstance(anchor, dict) else None
        try:
            cert = _load_anchor(text)[0]
        except (ValueError, binascii.Error) as exc:
            out.append({"invalid": {"error": "InvalidCertificate", "message": str(exc)}})
            continue
        out.append({"valid": {"subject": dn_string(cert.subject), "certificate": text,
                              "notBefore": _rfc3339(cert.not_valid_before_utc),
                              "notAfter": _rfc3339(cert.not_valid_after_utc)}})
    return {"anchors": out}


def trust_anchors(spec: Mapping[str, Any]) -> list[x509.Certificate]:
    section = spec.get("trustAnchors")
    anchors = section.get("anchors") if isinstance(section, dict) else None
    out: list[x509.Certificate] = []
    for anchor in anchors if isinstance(anchors, list) else []:
        try:
            out.extend(_load_anchor(anchor.get("certificate") if isinstance(anchor, dict) else None))
        except (ValueError, binascii.Error):
            continue
    return out


def load_chain(chain: Sequence[bytes]) -> list[x509.Certificate] | None:
    try:
        return [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        return None


def _valid_now(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def verify_chain(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> bool:
    """Each certificate issued by the next, the last by (or equal to) a currently valid anchor."""
    if not chain or not anchors:
        return False
    now = datetime.now(UTC)
    if not all(_valid_now(c, now) for c in chain):
        return False
    for cert, issuer in itertools.pairwise(chain):
        if not _issued_by(cert, issuer):
            return False
    last = chain[-1]
    return any(_valid_now(a, now) and (last == a or _issued_by(last, a)) for a in anchors)
