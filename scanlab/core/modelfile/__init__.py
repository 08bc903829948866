"""Model files: weights plus a JSON-Schema-validated manifest."""
