"""Who may see the dashboard, and which requests it answers.

- A login link carries a one-time code that `POST /v1/dashboard/login` minted for the bearer
  token's principal (`LoginCodes`): it works once, for `CODE_TTL` seconds.
- Redeeming it sets a cookie bound to that principal: HttpOnly, `SameSite=Strict`, path `/ui`,
  valid `COOKIE_TTL` seconds. Its value is the principal and its expiry, signed with the
  principal's own token (`Tokens.mac`): it survives a daemon restart and dies with the token.
- Every request must name this daemon in `Host` (`allowed_hosts`): a page of another site whose
  name resolves to 127.0.0.1 (DNS rebinding) gets a 403.
- Every state-changing request is a POST with `HX-Request: true` and an `Origin` that is this
  daemon's own: a form or script of another origin gets a 403 (CSRF).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

    from .._auth import Tokens

__all__ = [
    "CODE_TTL",
    "COOKIE",
    "COOKIE_TTL",
    "LoginCodes",
    "Refused",
    "allowed_hosts",
    "check_host",
    "check_post",
    "cookie_principal",
    "cookie_value",
]

CODE_TTL = 300.0
"""Seconds a login link works (once)."""
COOKIE = "outrider_ui"
COOKIE_TTL = 7 * 86_400
"""Seconds a dashboard login lasts."""
_MAX_CODES = 1_000
_CONTEXT = b"outrider dashboard cookie\n"


class Refused(Exception):
    """A request the dashboard does not answer: its status and why, in one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LoginCodes:
    """One-time login codes, each bound to a principal; kept in memory (a restart voids them)."""

    def __init__(self) -> None:
        self._codes: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def mint(self, principal: str, *, now: float | None = None) -> str:
        """A new code for `principal` (the oldest unused one goes beyond `_MAX_CODES`)."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = (principal, (time.monotonic() if now is None else now) + CODE_TTL)
        while len(self._codes) > _MAX_CODES:
            self._codes.popitem(last=False)
        return code

    def redeem(self, code: str, *, now: float | None = None) -> str | None:
        """The principal of an unused, unexpired code, which is used up; else None."""
        found = self._codes.pop(code, None)
        if found is None:
            return None
        principal, deadline = found
        return principal if (time.monotonic() if now is None else now) < deadline else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signed(principal: str, expires: int) -> bytes:
    return _CONTEXT + principal.encode() + b"\n" + str(expires).encode()


def cookie_value(tokens: Tokens, principal: str, *, now: float | None = None) -> str:
    """The cookie that logs `principal` in for `COOKIE_TTL` seconds."""
    expires = int(time.time() if now is None else now) + COOKIE_TTL
    mac = tokens.mac(principal, _signed(principal, expires))
    assert mac is not None, "a login code is minted only for a known principal"
    return f"{_b64(principal.encode())}.{expires}.{_b64(mac)}"


def cookie_principal(tokens: Tokens, value: str | None, *, now: float | None = None) -> str | None:
    """The principal a cookie logs in, if its signature holds and it has not expired."""
    try:
        name, expires_text, mac_text = (value or "").split(".")
        principal, expires, mac = _unb64(name).decode(), int(expires_text), _unb64(mac_text)
    except ValueError:  # malformed: not three parts, not base64, not UTF-8, not a number
        return None
    if expires <= (time.time() if now is None else now):
        return None
    expected = tokens.mac(principal, _signed(principal, expires))
    return principal if expected is not None and hmac.compare_digest(mac, expected) else None


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The `Host` values that name this daemon: its address, and loopback names if it is one.

    None for a daemon bound to every address (`0.0.0.0`, `::`, with `--allow-remote`): its
    names are not known, so any is taken (the cookie, bound to a name, still decides).
    """
    names = {host}
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        return None
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if loopback:
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return frozenset(
        f"[{n}]:{port}" if ":" in n and not n.startswith("[") else f"{n}:{port}" for n in names
    )


def check_host(request: Request, allowed: frozenset[str] | None) -> str:
    """The request's `Host`, if it names this daemon (`allowed`; None: any).

    Raises:
        Refused: 403, another name (DNS rebinding) or none.
    """
    host = request.headers.get("host", "").lower()
    if allowed is not None and host not in allowed:
        raise Refused(
            403,
            f"The dashboard answers only at {sorted(allowed)[0]}, not at {host or 'no host'!r}; "
            "open the link `outrider dashboard` prints.",
        )
    return host


def check_post(request: Request, host: str) -> None:
    """Refuse a state-changing request that htmx on this daemon's own page did not send.

    Raises:
        Refused: 403, without `HX-Request: true` or with another (or no) `Origin`.
    """
    if request.headers.get("hx-request") != "true":
        raise Refused(403, "Actions need the dashboard's page (its `HX-Request` header).")
    origin = request.headers.get("origin")
    if origin != f"{request.url.scheme}://{host}":
        raise Refused(403, f"Actions come only from the dashboard's own page, not {origin!r}.")
