"""Where a group's agent may connect on the web: its egress policy, pure and without I/O.

An agent reads untrusted chat, so the host decides per group what it may
reach; the egress proxy enforces this and adds the address rules (no
private or local address, whatever the policy).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

from events.types import ContainerConfig

DEFAULT_EGRESS = "open"
DEFAULT_PORTS = (80, 443)
ACCEPTED_FORMS = (
    "model-only, open, or allow:<host>[,<host>...] where a host is example.com, "
    "*.example.com, an IP address, or any of these as host:port"
)
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_NAME_LENGTH = 253


def normalise_host(text: str) -> str:
    """The canonical form of a host: an IP address in `ipaddress` form, else a lower-case ASCII name.

    Brackets around an IPv6 address and one trailing dot are removed;
    non-ASCII names are IDNA-encoded. Raises ValueError for anything that
    is not a valid host name or address.
    """
    if text.startswith("[") and text.endswith("]"):
        address = _ip_or_none(text[1:-1])
        if address is None or address.version != 6:
            raise ValueError(f"{text!r}: only an IPv6 address goes in brackets")
        return str(address)
    host = text
    address = _ip_or_none(host)
    if address is not None:
        return str(address)
    if ":" in host or host != host.strip() or not host:
        raise ValueError(f"{text!r} is not a valid host name")
    name = host[:-1] if host.endswith(".") else host
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{text!r} is not a valid host name ({exc})") from None
    name = name.lower()
    labels = name.split(".")
    if len(name) > _MAX_NAME_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{text!r} is not a valid host name")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} is neither a host name nor an IP address in dotted form")
    return name


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def format_endpoint(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class HostRule:
    """One entry of an allow list: a host, or its subdomains, on some ports."""

    name: str
    subdomains: bool = False
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        ports = DEFAULT_PORTS if self.port is None else (self.port,)
        if port not in ports:
            return False
        if self.subdomains:
            return host.endswith("." + self.name)
        return host == self.name

    def __str__(self) -> str:
        name = f"*.{self.name}" if self.subdomains else self.name
        if self.port is None:
            return name
        return format_endpoint(name, self.port)


@dataclass(frozen=True)
class EgressPolicy:
    """A group's egress policy: `model-only`, `allow` with its rules, or `open`."""

    kind: str
    rules: tuple[HostRule, ...] = ()

    def allows(self, host: str, port: int) -> str | None:
        """None when the policy lets a connection to host:port through, else why not."""
        try:
            name = normalise_host(host)
        except ValueError as exc:
            return f"nanoclaw egress: {exc}"
        if not 0 < port < 65536:
            return f"nanoclaw egress refuses port {port}: ports are 1 to 65535"
        if self.kind == "open" or any(rule.matches(name, port) for rule in self.rules):
            return None
        return f"nanoclaw egress policy {self} refuses {format_endpoint(name, port)}"

    def __str__(self) -> str:
        if self.kind == "allow":
            return "allow:" + ",".join(str(rule) for rule in self.rules)
        return self.kind


def parse_policy(text: str) -> EgressPolicy:
    """The policy a text form names; ValueError with the accepted forms for anything else."""
    try:
        return _parse(text.strip())
    except ValueError as exc:
        raise ValueError(f"egress policy {text!r}: {exc}; accepted: {ACCEPTED_FORMS}") from None


def _parse(text: str) -> EgressPolicy:
    keyword, colon, rest = text.partition(":")
    keyword = keyword.strip().lower()
    if keyword in ("model-only", "open") and not colon:
        return EgressPolicy(keyword)
    if keyword != "allow" or not colon:
        raise ValueError("unknown form")
    rules: list[HostRule] = []
    for item in rest.split(","):
        rule = parse_rule(item.strip())
        if rule not in rules:
            rules.append(rule)
    return EgressPolicy("allow", tuple(rules))


def parse_rule(text: str) -> HostRule:
    """One allow-list entry: `host`, `*.host`, an IP address, `[v6]`, each optionally with `:port`."""
    if not text:
        raise ValueError("an empty host in the allow list")
    host, port = split_endpoint(text)
    subdomains = host.startswith("*.")
    if subdomains:
        host = host[2:]
    name = normalise_host(host)
    if subdomains and _ip_or_none(name) is not None:
        raise ValueError(f"{text!r}: a wildcard applies to names, not IP addresses")
    return HostRule(name, subdomains, port)


def split_endpoint(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address, split; the host is not checked."""
    if text.startswith("["):
        host, bracket, rest = text.partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not a valid [address]:port")
        return host + "]", _port(text, rest[1:]) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(text, port)
    return text, None


def _port(text: str, port: str) -> int:
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return int(port)


def policy_of(config: ContainerConfig | None) -> str:
    """The policy a group's agents get: its own, else DEFAULT_EGRESS (the one place that decides)."""
    return (config.egress if config else None) or DEFAULT_EGRESS
