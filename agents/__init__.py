"""Kedge `agents` package (see DESIGN.md for its role)."""
