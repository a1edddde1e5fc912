"""Templates: one per page; htmx requests render one named block of it (jinja2-fragments)."""

from jinja2_fragments.fastapi import Jinja2Blocks

from app.settings import PROJECT_ROOT

templates = Jinja2Blocks(directory=str(PROJECT_ROOT / "templates"))
templates.env.globals["htmx_script"] = "js/htmx-2.0.11.min.js"


def render(
    request, name: str, context: dict | None = None, *, status_code: int = 200, block_name: str | None = None
):
    """Render a page (or, for htmx, one named block) with who is logged in and the CSRF token."""
    identity = getattr(request.state, "identity", None)
    full = {
        "identity": identity,
        "user": identity.user if identity else None,
        "csrf_token": identity.csrf_token if identity else None,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, full, status_code=status_code, block_name=block_name)
    response.headers["Vary"] = "HX-Request, Cookie"
    return response
