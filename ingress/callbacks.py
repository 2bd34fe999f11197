"""Callback URL policy: only http(s), and no private, loopback or link-local targets.

The check looks at the URL as written (literal addresses in any spelling a resolver accepts,
IPv4 inside IPv6, and well-known local names); it
does not resolve DNS at submission time, because a name can resolve differently when the
callback is sent. The worker that sends the callback re-checks the resolved address.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from brigade.addresses import is_public_address, literal_address

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


def _is_private_address(host: str) -> bool:
    address = literal_address(host)
    return address is not None and not is_public_address(address)


def is_private_host(host: str) -> bool:
    """True for loopback, private, link-local and reserved addresses and local-only names."""
    host = host.strip("[]").rstrip(".").lower()
    single_label = "." not in host and ":" not in host
    local_name = host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or single_label
    return local_name or _is_private_address(host)


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
