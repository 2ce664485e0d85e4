// Starts Swagger UI on this service's own document. A file of its own, not an inline
// script, so the page's Content-Security-Policy can allow scripts from 'self' only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json", // beside this page: /api/v1/openapi.json
    dom_id: "#swagger-ui",
    layout: "BaseLayout", // no top bar that would load other documents
    deepLinking: true,
    validatorUrl: null, // no badge fetched from an outside validator
    queryConfigEnabled: false,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});
