import pytest

from lab.seeds import Seed
from lab.seeds.loader import load_seed
from lab.synthetic import SyntheticMesh, generate


@pytest.fixture(scope="session")
def bookstore() -> Seed:
    return load_seed("bookstore")


@pytest.fixture(scope="session")
def synthetic() -> Seed:
    return load_seed("synthetic", services=1000)


@pytest.fixture(scope="session")
def model() -> SyntheticMesh:
    return generate(services=1000, random_seed=7)
