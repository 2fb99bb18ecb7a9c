"""The REST API: app factory, routes per resource, auth, errors mapped to JSON in one place."""
