"""Tests of the registry service."""
