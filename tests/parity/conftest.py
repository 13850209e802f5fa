"""Fixtures of the parity tests (the helpers are in parity_helpers.py)."""

import pytest
from parity_helpers import Oracle, sp, sp3


@pytest.fixture
def oracle():
    return Oracle()


@pytest.fixture
def make_sparse():
    return sp


@pytest.fixture
def make_sparse3():
    return sp3
