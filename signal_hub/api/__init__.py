"""REST endpoints under ``/api``, one module per resource."""
