"""Tests of derive/core/."""
