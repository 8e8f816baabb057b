"""The egress policy: its text forms, and which host names and ports each lets through."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from rules.egress import DEFAULT_EGRESS, normalise_host, parse_policy


def allowed(policy: str, host: str, port: int = 443) -> bool:
    return parse_policy(policy).allows(host, port) is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("model-only", "model-only"),
        ("open", "open"),
        (" Open ", "open"),
        ("allow:example.com", "allow:example.com"),
        ("allow: Example.COM. , *.Example.org:8443", "allow:example.com,*.example.org:8443"),
        ("allow:11.22.33.2,[2001:DB8::1]:8443,2001:db8:0::2", "allow:11.22.33.2,[2001:db8::1]:8443,2001:db8::2"),
        ("allow:bücher.de", "allow:xn--bcher-kva.de"),
        ("allow:a.com,a.com,A.com.", "allow:a.com"),
    ],
)
def test_a_policy_prints_in_canonical_form(text, canonical):
    assert str(parse_policy(text)) == canonical
    assert str(parse_policy(canonical)) == canonical


def test_the_default_policy_is_open():
    assert str(parse_policy(DEFAULT_EGRESS)) == "open"


@pytest.mark.parametrize(
    "text",
    ["", "closed", "allow", "allow:", "allow:a.com,,b.com", "open:a.com", "model-only:x", "allow:*",
     "allow:*.11.22.33.2", "allow:a.com:0", "allow:a.com:65536", "allow:a.com:http", "allow:[1.2.3.4]",
     "allow:a b.com", "allow:[::1]x", "allow:evil.org#@example.com", "allow:user@example.com",
     "allow:exa_mple..com", "allow:-a.com", "allow:2130706433", "allow:" + "a" * 64 + ".com"],
)  # fmt: skip
def test_a_bad_policy_is_one_line_naming_the_accepted_forms(text):
    with pytest.raises(ValueError) as caught:
        parse_policy(text)
    message = str(caught.value)
    assert "\n" not in message
    assert repr(text) in message
    assert "model-only, open, or allow:<host>" in message


def test_model_only_refuses_everything_and_says_so():
    policy = parse_policy("model-only")
    assert policy.allows("example.com", 443) == "nanoclaw egress policy model-only refuses example.com:443"
    assert policy.allows("11.22.33.2", 80) is not None


def test_open_allows_any_valid_host_on_any_port():
    assert allowed("open", "example.com", 443)
    assert allowed("open", "11.22.33.2", 8080)
    assert allowed("open", "[2606:4700::1]", 22)


def test_a_listed_name_allows_exactly_that_name():
    assert allowed("allow:example.com", "example.com")
    assert not allowed("allow:example.com", "www.example.com")
    assert not allowed("allow:example.com", "notexample.com")


def test_a_wildcard_allows_subdomains_but_not_the_name_itself():
    assert allowed("allow:*.example.com", "api.example.com")
    assert allowed("allow:*.example.com", "a.b.example.com")
    assert not allowed("allow:*.example.com", "example.com")
    assert not allowed("allow:*.example.com", "badexample.com")


@pytest.mark.parametrize(
    "host",
    ["example.com.evil.org", "evil.org#@example.com", "example.com@evil.org", "evil.org/example.com",
     "evil.org?example.com", "example.com:443", "example.com\x00.evil.org", "example.com ", " example.com",
     "example.com..", "evil.org\\example.com", "[example.com]", ""],
)  # fmt: skip
def test_names_that_only_contain_an_allowed_name_are_refused(host):
    assert not allowed("allow:example.com,*.example.com", host)


@pytest.mark.parametrize(
    "host", ["EXAMPLE.COM", "Example.Com.", "example.com.", "ＥＸＡＭＰＬＥ.com", "example。com"]
)
def test_case_trailing_dots_and_unicode_forms_are_normalised_before_matching(host):
    assert allowed("allow:example.com", host)


def test_an_international_name_matches_its_punycode_and_back():
    assert allowed("allow:bücher.de", "xn--bcher-kva.de")
    assert allowed("allow:xn--bcher-kva.de", "BÜCHER.de")


def test_ports_are_80_and_443_unless_the_rule_names_one():
    assert allowed("allow:example.com", "example.com", 80)
    assert allowed("allow:example.com", "example.com", 443)
    assert not allowed("allow:example.com", "example.com", 8443)
    assert allowed("allow:example.com:8443", "example.com", 8443)
    assert not allowed("allow:example.com:8443", "example.com", 443)
    assert not allowed("open", "example.com", 0)
    assert not allowed("open", "example.com", 65536)


def test_ip_literals_match_in_canonical_form():
    assert allowed("allow:11.22.33.2", "11.22.33.2", 80)
    assert allowed("allow:2001:db8::1", "[2001:DB8:0:0::1]")
    assert allowed("allow:[2001:db8::1]:8443", "2001:db8::1", 8443)
    assert not allowed("allow:[2001:db8::1]:8443", "2001:db8::1", 443)


@pytest.mark.parametrize(
    "host", ["11.22.33.02", "2130706433", "0x0b.22.33.2", "11.22.33", "11.22.33.2.", "[11.22.33.2]"]
)
def test_odd_spellings_of_an_address_are_not_the_address(host):
    assert not allowed("allow:11.22.33.2", host, 80)


def test_the_refusal_names_the_policy_and_the_destination():
    reason = parse_policy("allow:example.com").allows("Evil.ORG.", 443)
    assert reason == "nanoclaw egress policy allow:example.com refuses evil.org:443"
    assert parse_policy("allow:example.com").allows("::1", 443).endswith("refuses [::1]:443")


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_NAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join).filter(lambda name: not name.split(".")[-1].isdigit())


@given(prefix=st.text(max_size=12), suffix=st.text(max_size=12))
def test_no_text_around_an_allowed_name_is_allowed_unless_it_is_a_subdomain(prefix, suffix):
    host = prefix + "example.com" + suffix
    try:
        name = normalise_host(host)
    except ValueError:
        name = None
    expected = name == "example.com" or (name is not None and name.endswith(".example.com"))
    assert allowed("allow:example.com,*.example.com", host) == expected


@given(rules=st.lists(st.tuples(_NAME, st.booleans(), st.none() | st.integers(1, 65535)), min_size=1, max_size=5))
def test_the_canonical_form_parses_back_to_itself(rules):
    items = (f"{'*.' if wild else ''}{name}{'' if port is None else f':{port}'}" for name, wild, port in rules)
    text = "allow:" + ",".join(items)
    policy = parse_policy(text)
    assert parse_policy(str(policy)) == policy


@given(host=st.text(max_size=40), port=st.integers(-5, 70000))
def test_allows_never_raises_whatever_the_host(host, port):
    for policy in ("open", "model-only", "allow:example.com"):
        assert isinstance(parse_policy(policy).allows(host, port), str | None)
