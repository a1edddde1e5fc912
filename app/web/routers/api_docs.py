"""The API reference page (/api/docs): Swagger UI from static/, never from a CDN."""

from fastapi import APIRouter, Request

from app.web.templating import render

SWAGGER_UI = "swagger-ui-5.31.0"  # the vendored release, a folder of static/
OPENAPI_URL = "/api/v1/openapi.json"

router = APIRouter(include_in_schema=False)


@router.get("/api/docs")
def api_reference(request: Request):
    return render(request, "api/docs.html", {"swagger_ui": SWAGGER_UI, "openapi_url": OPENAPI_URL})
