"""Kedge `schemas` package (see DESIGN.md for its role)."""
