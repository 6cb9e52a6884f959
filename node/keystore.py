"""Key files on disk: generate Ed25519 keys and keep them as PEM PKCS#8 with mode 0600.

The pure core (``ledger.keys``) converts keys to and from PEM bytes; this module adds what the
core must not do: draw randomness and touch the file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import EncodingError, StorageError
from ledger.keys import private_key_from_pem, private_key_to_pem

__all__ = ["generate_key", "load_key", "save_key"]


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key from the operating system's randomness."""
    return Ed25519PrivateKey.generate()


def save_key(private_key: Ed25519PrivateKey, path: Path, *, overwrite: bool = False) -> None:
    """Write ``private_key`` to ``path`` as PEM PKCS#8, readable by its owner only (0600).

    The key goes to a new 0600 file in the same directory that is then renamed over ``path``,
    so the key is never readable by others and a failed write leaves no partial key file.

    Raises:
        StorageError: the file exists (unless ``overwrite``) or cannot be written.
    """
    if path.exists() and not overwrite:
        raise StorageError(f"{path} exists; refusing to overwrite a key")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, private_key_to_pem(private_key))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if path appeared meanwhile: never clobber a key
            os.unlink(temporary)
    except FileExistsError as e:
        temporary.unlink(missing_ok=True)
        raise StorageError(f"{path} exists; refusing to overwrite a key") from e
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {e}") from e


def load_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM PKCS#8 Ed25519 private key.

    Raises:
        StorageError: the file cannot be read.
        EncodingError: it holds no Ed25519 private key.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e}") from e
    try:
        return private_key_from_pem(data)
    except EncodingError as e:
        raise EncodingError(f"{path}: {e}") from e
