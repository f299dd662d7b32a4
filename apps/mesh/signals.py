"""Signals the mesh snapshot sends, so apps above it can react to fresh data without the mesh importing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after a collection has written the snapshot of `cluster` (keyword argument), outside its transaction.
snapshot_stored = Signal()
