"""Helpers shared by test files, imported as ``tests.helpers.<module>``.

pytest puts the repository root on sys.path (``pythonpath`` in pyproject.toml); scripts
that tests start in a subprocess run with the root as their working directory, which
puts it there too.
"""
