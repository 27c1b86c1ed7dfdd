"""Tests of derive/render/."""
