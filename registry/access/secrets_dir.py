"""Secrets kept in the data dir: the local JWT signing key and the bootstrap admin credentials.

Files are written 0600 and published atomically and exclusively (temp file + ``os.link``), so processes
starting at the same time on one data dir agree on one key and one password.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "ADMIN_FILE",
    "SIGNING_KEY_FILE",
    "load_or_create_signing_key",
    "publish_exclusive",
    "read_admin_credentials",
    "remove_admin_credentials",
    "write_admin_credentials",
]

SIGNING_KEY_FILE = "jwt-signing-key.pem"
ADMIN_FILE = "admin-credentials.json"


def publish_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data``, mode 0600, only if it does not exist. True if this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_or_create_signing_key(data_dir: Path) -> rsa.RSAPrivateKey:
    """The RSA-2048 key Kedge signs its own JWTs with (``<data_dir>/jwt-signing-key.pem``)."""
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        publish_exclusive(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return loaded


def write_admin_credentials(data_dir: Path, username: str, password: str) -> bool:
    """Keep the bootstrap admin's credentials (0600); False if a file is already there."""
    body = json.dumps({"username": username, "password": password}, indent=2).encode() + b"\n"
    return publish_exclusive(data_dir / ADMIN_FILE, body)


def read_admin_credentials(data_dir: Path) -> tuple[str, str] | None:
    path = data_dir / ADMIN_FILE
    try:
        data = json.loads(path.read_text())
        return str(data["username"]), str(data["password"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def remove_admin_credentials(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / ADMIN_FILE).unlink()
