"""Which addresses the egress proxy never connects to, asked of real sockets on this machine."""

from __future__ import annotations

import socket

import pytest

from jobs.egress_addresses import address_problem, connect_address


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "11.22.33.2", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_of_other_machines_are_reachable(address):
    assert address_problem(address) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"), ("::1", "loopback"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("10.0.0.1", "private"),
        ("172.16.5.4", "private"), ("192.168.0.1", "private"), ("fd12::1", "private"), ("100.64.1.1", "carrier-grade"),
        ("224.0.0.251", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "private"), ("192.0.2.7", "private"),
        ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:c0a8:101::1", "private"), ("::7f00:1", "reserved"), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),
    ],
)  # fmt: skip
def test_addresses_that_are_not_public_are_refused_with_their_kind(address, kind):
    assert kind in address_problem(address)


def _own_addresses() -> list[str]:
    names = socket.getaddrinfo(socket.gethostname(), None) + socket.getaddrinfo("localhost", None)
    return sorted({info[4][0] for info in names})


def test_every_address_of_this_machine_is_refused():
    for address in _own_addresses():
        assert address_problem(address) is not None, address


def test_an_ipv4_mapped_address_is_connected_as_plain_ipv4():
    assert connect_address("::ffff:11.22.33.2") == "11.22.33.2"
    assert connect_address("2606:4700::1111") == "2606:4700::1111"
