// Command caddy is Caddy v2 with the standard modules and mcc's modules built
// in: the same binary that
//
//	xcaddy build v2.11.9 --with github.com/mccgate/mcc=.
//
// produces, built with the plain Go toolchain (go build ./cmd/caddy).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard modules, as in every xcaddy build.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// mcc: the `mcc` app, the `fusion_set` handler and the
	// `fusion_set` client certificate verifier.
	_ "github.com/mccgate/mcc/caddymod"
)

func main() {
	caddycmd.Main()
}
