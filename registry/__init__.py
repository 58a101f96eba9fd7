"""Kedge `registry` package (see DESIGN.md for its role)."""
