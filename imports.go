// Package mcc is the module root. It only blank-imports the Caddy modules so
// that xcaddy, which imports exactly the package path given to --with, builds
// them in:
//
//	xcaddy build v2.11.9 --with github.com/mccgate/mcc=.
//
// The modules themselves live in package caddymod.
package mcc

import _ "github.com/mccgate/mcc/caddymod"
