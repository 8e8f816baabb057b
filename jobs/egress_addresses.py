"""Which addresses the host never connects to for an agent, whatever its egress policy.

Only public addresses of other machines: never loopback, link-local,
private, shared (CGNAT), multicast, reserved or unspecified ones, in any
IPv6 spelling that embeds them, nor an address this machine owns.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_problem(text: str) -> str | None:
    """Why the proxy never connects to this address, or None when it is a public address elsewhere.

    Addresses that embed an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo)
    are judged by what they embed too. "Elsewhere" is asked of the kernel by
    binding a socket to the address: bind succeeds exactly for addresses this
    machine owns (its interfaces' addresses, broadcast addresses and any
    local route), which is the kernel's own notion of "local"; a connect
    and `getsockname` probe would miss addresses served by a local route
    whose preferred source differs. On a host with `ip_nonlocal_bind` set,
    every bind succeeds, so every destination is refused: the probe fails
    closed.
    """
    address = ipaddress.ip_address(text)
    embedded = _embedded_ipv4(address)
    for candidate in embedded or [address]:
        kind = _special_kind(candidate)
        if kind:
            return f"{text} is {kind}"
    if not embedded and address.is_reserved:
        return f"{text} is a reserved address"
    if _is_local(connect_address(text)):
        return f"{text} is an address of this machine"
    return None


def connect_address(text: str) -> str:
    """The address to connect to: an IPv4-mapped IPv6 address becomes the IPv4 address it maps."""
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped) if mapped else str(address)


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    if address.version == 4:
        return []
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour:
        return [address.sixtofour]
    return list(address.teredo or [])


def _special_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    checks = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _CGNAT, "a carrier-grade NAT (shared) address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((kind for failed, kind in checks if failed), None)


def _is_local(text: str) -> bool:
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        probe = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return False  # no sockets of this family here: no connection of it can be made either
    with probe:
        try:
            probe.bind((text, 0))
        except OSError as exc:
            return exc.errno != errno.EADDRNOTAVAIL  # anything but "not ours" counts as ours
    return True
