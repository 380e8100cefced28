package api

import (
	_ "embed"
	"net/http"

	"github.com/mccgate/mcc/server/auth"
)

// openAPIDocument is the OpenAPI 3.1 description of this API. It is kept
// in the repository next to the handlers; the contract test validates every
// route's requests and responses against it, so it cannot drift silently.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI 3.1 document the server serves at
// /v1/openapi.json (a copy: callers cannot change what is served).
func OpenAPIDocument() []byte {
	return append([]byte(nil), openAPIDocument...)
}

// routesOpenAPI registers GET /v1/openapi.json (public: the description
// holds no data, and clients generate code from it).
func (a *API) routesOpenAPI() {
	a.route("GET", "/v1/openapi.json", "", a.openAPI)
}

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request, _ *auth.Caller) error {
	w.Header().Set("Content-Type", "application/json")
	// The document changes only with the binary; let clients revalidate
	// rather than fetch it on every start.
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(openAPIDocument)
	return err
}
