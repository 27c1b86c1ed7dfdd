"""Tests of derive/checker/."""
