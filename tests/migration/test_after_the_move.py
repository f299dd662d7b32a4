"""The bookstore after the move: the assistant's bundle applied to the stand-in (OSM removed, Istio's control plane,
istio-proxy sidecars) reads back as the OSM original did."""

from __future__ import annotations

import pytest

from apps.migration import services
from lab.seeds.istio import BUNDLE_FILE, REVISION

pytestmark = pytest.mark.django_db


def test_it_keeps_the_checked_in_bundle_as_the_assistant_writes_it(bookstore_cluster):
    """`--seed istio-bookstore` applies a checked-in bundle: it must be what the assistant writes today."""
    migration = services.build(bookstore_cluster, REVISION)

    assert services.bundle_yaml(migration) == BUNDLE_FILE.read_text()
