"""The layering holds: no import circle, and no import runs up a layer or across to an equal.

base <- events <- rules <- router | jobs <- nanoclaw. The figures come from
bench/structure.py, which reads the syntax trees (imports inside functions
included, since they would only hide a circle).
"""

from __future__ import annotations

import pytest

from bench.structure import LAYERS, static_figures


@pytest.fixture(scope="module")
def figures() -> dict:
    return static_figures()


def test_no_module_imports_a_module_that_imports_it_back(figures):
    assert figures["circles"] == []


def test_no_package_imports_one_above_it_or_its_equal(figures):
    assert figures["upward"] == []


def test_every_package_of_the_service_has_a_layer():
    from bench.structure import REPO

    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(LAYERS)
