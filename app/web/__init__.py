"""The web application: routers per role, dependencies, template context."""
