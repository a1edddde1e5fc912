// The API reference page: Swagger UI over our own OpenAPI document. It lives in a file of its own
// because the Content-Security-Policy allows no inline script. validatorUrl null: Swagger UI would
// otherwise send the document to validator.swagger.io.
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: document.body.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
  });
});
