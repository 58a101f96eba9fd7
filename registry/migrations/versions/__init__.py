"""Registry migration revisions (one module per revision)."""
