"""pytest's settings for the examples in genzoo/'s docstrings (the tests' own fixtures are in tests/conftest.py)."""

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _examples_make_their_folders_in_tmp_path(request):
    """An example's ``tempfile.mkdtemp()`` folder goes under pytest's ``tmp_path``, which pytest prunes, not /tmp
    (six examples left a folder there at every run, one a trained run with its report). Doctests only: the tests
    use ``tmp_path`` themselves, and torch's compile caches stay where they are."""
    if type(request.node).__name__ != "DoctestItem":
        yield
        return
    before = tempfile.tempdir
    tempfile.tempdir = str(request.getfixturevalue("tmp_path"))
    try:
        yield
    finally:
        tempfile.tempdir = before
