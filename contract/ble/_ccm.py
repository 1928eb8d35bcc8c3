"""AES-128-CCM sealing and opening for the profile, with every failure mapped to our errors."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from contract.ble.errors import BleAuthError, BleDecodeError, BleEncodeError

KEY_LEN = 16
NONCE_LEN = 13


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes | None, tag_len: int) -> bytes:
    """Ciphertext followed by a ``tag_len``-byte MIC."""
    if len(key) != KEY_LEN:
        raise BleEncodeError(f"key is {len(key)} bytes, expected {KEY_LEN}")
    return AESCCM(bytes(key), tag_length=tag_len).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, nonce: bytes, sealed: bytes, aad: bytes | None, tag_len: int) -> bytes:
    """The plaintext of ``ciphertext || MIC``; BleAuthError when the MIC does not verify."""
    if len(key) != KEY_LEN:
        raise BleDecodeError(f"key is {len(key)} bytes, expected {KEY_LEN}")
    try:
        return AESCCM(bytes(key), tag_length=tag_len).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise BleAuthError("authentication failed: wrong key or tampered bytes") from None
