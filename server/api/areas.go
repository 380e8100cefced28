package api

// routesAreas registers every area's routes. Each area's owner adds one
// line here and nothing else: sets.go (fusion sets), tokens.go, audit.go,
// builds.go, certs.go, revocations.go, crl.go, records.go, events.go,
// openapi.go.
func (a *API) routesAreas() {
	a.routesOpenAPI()
	a.routesSetsTokensAudit()
	a.routesCertificateAreas()
	a.routesEvents()
	a.routesEnroll()
}
