"""The secret key: encrypting what the store must not keep in clear.

**The key.** ``MODELBUS_SECRET_KEY`` (one Fernet key, or several separated by commas: the
first encrypts, all decrypt, for rotation), else the key file ``DATA_DIR/secret.key``,
created with mode 0600 on the first start. Several nodes sharing one PostgreSQL store need
the same key: set ``MODELBUS_SECRET_KEY`` on each (make one with ``modelbus secret-key``).

:class:`SecretBox` encrypts and decrypts text with it (Fernet: AES-128-CBC + HMAC-SHA256).
What is encrypted, and how it is shown meanwhile, is the callers' business: listener
credentials are sealed by :mod:`modelbus.listeners.credentials`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from modelbus.errors import InvalidInput

__all__ = ["KEY_FILE", "SecretBox"]

KEY_FILE = "secret.key"


class SecretBox:
    """Encrypts and decrypts text with the server's secret key(s). Build with :meth:`load`.
    Thread-safe."""

    def __init__(self, fernet: MultiFernet) -> None:
        self._fernet = fernet

    @classmethod
    def load(cls, data_dir: Path, key: str | None = None) -> SecretBox:
        """Keys from ``key`` (comma-separated Fernet keys, the first one encrypting), else
        from ``data_dir/secret.key``, created (mode 0600) with a new key if missing.
        Raises :class:`InvalidInput` for a malformed key."""
        text = key if key else _key_file(data_dir / KEY_FILE)
        keys = [k.strip() for k in text.replace("\n", ",").split(",") if k.strip()]
        try:
            return cls(MultiFernet([Fernet(k) for k in keys]))
        except (ValueError, TypeError):
            source = "MODELBUS_SECRET_KEY" if key else str(data_dir / KEY_FILE)
            raise InvalidInput(
                f"{source} does not hold a valid Fernet key (32 url-safe base64 bytes); "
                "make one with `modelbus secret-key`"
            ) from None

    @staticmethod
    def new_key() -> str:
        """A new random key, as ``MODELBUS_SECRET_KEY`` takes it."""
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, text: str) -> str:
        """``text`` encrypted with the first key, as ASCII."""
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The text ``token`` holds; raises :class:`InvalidInput` when none of the keys
        decrypts it (the key changed) or it is not a token at all."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise InvalidInput("cannot be decrypted with this server's secret key") from None


def _key_file(path: Path) -> str:
    """The key file's content, creating it (mode 0600) when missing. The new file is written
    aside and linked into place, so two processes starting at once agree on one key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(SecretBox.new_key() + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink(missing_ok=True)
    return path.read_text(encoding="ascii")
