package fleet

import (
	"os"
	"testing"

	"github.com/mccgate/mcc/internal/caddytesting"
)

// Ports of this package's in-process Caddy. Other packages that run
// caddytest use other admin ports (2999, 2998, 2997) and other listener
// ports, so `go test ./...` can run them side by side.
const (
	adminPort = 2996
	httpPort  = 29380
	httpsPort = 29743
)

// TestMain fails (never skips) where caddytest would skip every test, and
// gives Caddy a temporary home.
func TestMain(m *testing.M) {
	os.Exit(caddytesting.Main(m, "fleet"))
}
