import pytest
from hopkit.bench._common import gowalla_graph


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.bench)


@pytest.fixture(scope="session")
def gowalla():
    """(R, A): Gowalla-shaped interactions and their normalised adjacency."""
    return gowalla_graph()
