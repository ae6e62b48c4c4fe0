"""Fixtures for training tests."""
import gin
import pytest


@pytest.fixture
def clean_gin():
    """Each test parses its own gin configuration."""
    gin.clear_config()
    yield
    gin.clear_config()
