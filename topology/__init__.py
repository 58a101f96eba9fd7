"""Kedge `topology` package (see DESIGN.md for its role)."""
