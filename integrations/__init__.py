"""Kedge `integrations` package (see DESIGN.md for its role)."""
