"""Tests of derive/bench/."""
