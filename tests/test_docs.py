"""The examples in the installed modules' docstrings run and print what they say."""

import doctest

import pytest

import ferromine.psi


@pytest.mark.parametrize("module", [ferromine.psi])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
