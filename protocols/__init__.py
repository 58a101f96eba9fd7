"""Kedge `protocols` package (see DESIGN.md for its role)."""
