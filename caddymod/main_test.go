package caddymod

import (
	"os"
	"testing"

	"github.com/mccgate/mcc/internal/caddytesting"
)

// adminPort is this package's in-process Caddy admin port. Other packages
// that run caddytest use other ports, so `go test ./...` can run them side
// by side.
const adminPort = 2999

// TestMain fails (never skips) where caddytest would skip every test, and
// gives Caddy a temporary home so tests never touch the user's.
func TestMain(m *testing.M) {
	os.Exit(caddytesting.Main(m, "caddymod"))
}
