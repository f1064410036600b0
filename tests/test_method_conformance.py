"""One conformance suite over the whole method registry (in the spirit of scikit-learn's
``parametrize_with_checks``): every method added later passes it without new harness code.
The checks themselves live in ``benchmark.checks.methods`` so method authors can run them too."""
from __future__ import annotations

import pytest

from benchmark.checks import METHOD_CHECKS
from methods import list_methods

METHODS = list_methods()


def test_registry_is_not_empty():
    assert {"image_only", "tabular_only", "early_fusion", "late_fusion", "tabular_sklearn"} <= set(METHODS)


@pytest.mark.parametrize("check", METHOD_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", METHODS)
def test_method_conformance(name, check, tiny_data, encoder_config):
    check(name, tiny_data, encoder_config)
