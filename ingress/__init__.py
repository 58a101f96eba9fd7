"""Kedge `ingress` package (see DESIGN.md for its role)."""
