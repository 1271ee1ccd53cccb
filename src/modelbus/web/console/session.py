"""Console sessions: an API key, given once at login, carried in a signed, encrypted cookie.

The session cookie holds the API key encrypted (Fernet), the session's id and its CSRF
token, under an itsdangerous timed signature. Every request opens the cookie, checks the
session is live in the store (:mod:`modelbus.store.sessions`: logging out or revoking the
key ends it on every node, so a saved cookie is worthless afterwards) and verifies the key
with the key store exactly as the API does, so the console has the key's scopes and no more.
The key never reaches the browser's JavaScript (the cookie is HttpOnly) and cannot be read
out of a copied cookie without the server's secret.

Key material: the server's secret key (:mod:`modelbus.store.secrets`: ``MODELBUS_SECRET_KEY``,
else ``DATA_DIR/secret.key``, mode 0600, made at the first start), the first key of the
list, the one that encrypts. So the nodes of one store that share ``MODELBUS_SECRET_KEY``
accept each other's sessions, and rotating the key ends every session. Signing and
encryption use keys derived from it for their purpose alone (HMAC-SHA256 with a label),
so neither can stand in for the other, nor for the key that encrypts broker credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from modelbus.errors import Unauthenticated
from modelbus.store.secrets import KEY_FILE

SESSION_MAX_AGE_S = 8 * 3600
LOGIN_MAX_AGE_S = 3600


class SessionExpired(Unauthenticated):
    """The session cookie is older than :data:`SESSION_MAX_AGE_S` (log in again)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    """What a session cookie carries: the API key it logged in with, the session's id in
    the store, and its CSRF token."""

    api_key: str
    id: str
    csrf_token: str


def load_secret(data_dir: Path, secret_key: str | None = None) -> bytes:
    """The console's key material: the first of the server's secret keys (``secret_key``,
    as ``MODELBUS_SECRET_KEY`` gives it, else the key file the server made at start).
    Blocking (reads a file). Raises :class:`RuntimeError` when there is no key at all."""
    text = secret_key or _read_key_file(data_dir / KEY_FILE)
    first = next((k.strip() for k in text.replace("\n", ",").split(",") if k.strip()), "")
    if not first:
        raise RuntimeError(f"no secret key: set MODELBUS_SECRET_KEY or keep {data_dir / KEY_FILE}")
    return first.encode("ascii")


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError as exc:
        raise RuntimeError(f"cannot read the server's secret key {path}: {exc.strerror}") from None


def _derive(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"modelbus.web.console.{purpose}".encode(), hashlib.sha256).digest()


class SessionCodec:
    """Issues and opens session cookies and login-form tokens (pure; no I/O)."""

    def __init__(self, secret: bytes, *, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, "encrypt")))
        self._sessions = URLSafeTimedSerializer(_derive(secret, "sign"), salt="session")
        self._logins = URLSafeTimedSerializer(_derive(secret, "sign"), salt="login")

    def issue(self, api_key: str, session_id: str) -> tuple[str, Session]:
        """The cookie of the session ``session_id`` (started in the store) for ``api_key``:
        ``(cookie value, session)`` with a fresh CSRF token. Both ids are sealed."""
        session = Session(api_key=api_key, id=session_id, csrf_token=secrets.token_urlsafe(24))
        sealed = self._fernet.encrypt(f"{session_id} {api_key}".encode()).decode("ascii")
        cookie = self._sessions.dumps({"k": sealed, "c": session.csrf_token})
        return cookie, session

    def open(self, cookie: str) -> Session:
        """The session in ``cookie``. Raises :class:`SessionExpired` past its age, and
        :class:`Unauthenticated` for a cookie this server did not issue."""
        try:
            data: Any = self._sessions.loads(cookie, max_age=self.max_age_s)
            sealed = self._fernet.decrypt(str(data["k"]).encode()).decode()
            session_id, _, api_key = sealed.partition(" ")
            return Session(api_key=api_key, id=session_id, csrf_token=str(data["c"]))
        except SignatureExpired:
            raise SessionExpired("your session expired: log in again") from None
        except (BadSignature, InvalidToken, KeyError, TypeError, UnicodeDecodeError):
            raise Unauthenticated("not logged in") from None

    def login_token(self) -> tuple[str, str]:
        """``(cookie value, form value)`` protecting the login form (double submit: the
        form's hidden field must match the signed cookie set with the form)."""
        token = secrets.token_urlsafe(24)
        return self._logins.dumps(token), token

    def login_token_matches(self, cookie: str | None, form_value: str | None) -> bool:
        """Whether a posted login form carries the token of the cookie set with it."""
        if not cookie or not form_value:
            return False
        try:
            expected = self._logins.loads(cookie, max_age=LOGIN_MAX_AGE_S)
        except BadSignature:
            return False
        return hmac.compare_digest(str(expected), form_value)


def csrf_matches(session: Session, form_value: str | None) -> bool:
    """Whether a posted form carries its session's CSRF token."""
    return bool(form_value) and hmac.compare_digest(session.csrf_token, str(form_value))
