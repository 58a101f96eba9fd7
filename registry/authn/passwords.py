"""Password checks for device credentials: plain string, ``{"plain"}``, ``{"bcrypt"}``, ``{"sha512"}``.

The slow hashes run in a worker thread so an endpoint's event loop keeps serving while bcrypt works.
"""

from __future__ import annotations

import asyncio
import hmac

import bcrypt

from registry.authn import sha512_crypt
from schemas.registry import BcryptPassword, Password, PlainPassword, Sha512Password


def _bcrypt(presented: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(presented.encode(), hashed.encode())
    except ValueError:  # malformed stored hash: never matches
        return False


def _sha512(presented: str, hashed: str) -> bool:
    try:
        return sha512_crypt.verify(presented, hashed)
    except sha512_crypt.MalformedHash:
        return False


def _plain(presented: str, stored: str) -> bool:
    return hmac.compare_digest(presented.encode(), stored.encode())


async def verify(stored: Password, presented: str) -> bool:
    """Does ``presented`` match the stored password?"""
    if isinstance(stored, str):
        return _plain(presented, stored)
    if isinstance(stored, PlainPassword):
        return _plain(presented, stored.plain)
    if isinstance(stored, BcryptPassword):
        return await asyncio.to_thread(_bcrypt, presented, stored.bcrypt)
    if isinstance(stored, Sha512Password):
        return await asyncio.to_thread(_sha512, presented, stored.sha512)
    return False
