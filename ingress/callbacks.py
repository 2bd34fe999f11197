"""Callback URL policy: only http(s), and no private, loopback or link-local targets.

The check looks at the URL as written (literal addresses and well-known local names); it
does not resolve DNS at submission time, because a name can resolve differently when the
callback is sent. The worker that sends the callback re-checks the resolved address.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


def _is_private_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global or address.is_multicast


def is_private_host(host: str) -> bool:
    """True for loopback, private, link-local and reserved addresses and local-only names."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or ("." not in host and ":" not in host):
        return True
    return _is_private_address(host)


def check_callback_url(url: str, *, allow_private: bool) -> str | None:
    """None when ``url`` is acceptable, else a sentence saying why not."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "scheme must be http or https"
    if not host:
        return "URL has no host"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed"
    if not allow_private and is_private_host(host):
        return "private, loopback and local targets are not allowed for this tenant"
    return None
