package store

import (
	"testing"

	"github.com/mccgate/mcc/internal/pgtest"
)

// TestMain lets the package's PostgreSQL tests share one real cluster
// (pgtest.Shared), each test with its own database.
func TestMain(m *testing.M) { pgtest.Main(m) }
