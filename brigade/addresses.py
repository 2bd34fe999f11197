"""Which network addresses a tenant may make Brigade connect to (callback targets).

Only globally routable unicast addresses are public. IPv4 carried inside IPv6
(``::ffff:127.0.0.1``, 6to4, Teredo, NAT64 ``64:ff9b::/96``) is judged as the IPv4 address
it carries, and the legacy IPv4 spellings that resolvers accept (``127.1``, ``0x7f.1``,
``2130706433``, ``0177.0.0.1``) are read the way ``inet_aton`` reads them.
"""

from __future__ import annotations

import ipaddress
import re
import socket

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LEGACY_IPV4 = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)


def is_public_address(address: str) -> bool:
    """True only for a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return is_public_address(str(embedded))
        if ip in _NAT64:
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


def literal_address(host: str) -> str | None:
    """The address a host written as a literal stands for (any IPv4 spelling), else None."""
    host = host.strip("[]")
    try:
        return str(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None
