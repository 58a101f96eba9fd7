"""Tests of users and access (registry/access)."""
