package parity

import (
	"os"
	"testing"

	"github.com/mccgate/mcc/internal/caddytesting"
)

// adminPort is this package's in-process Caddy admin port: other packages
// running caddytest use other ports, so `go test ./...` can run them side by
// side.
const adminPort = 2997

// TestMain fails (never skips) where caddytest would skip every test, and
// gives Caddy a temporary home.
func TestMain(m *testing.M) {
	os.Exit(caddytesting.Main(m, "parity"))
}
