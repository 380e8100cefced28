package webhook

import (
	"testing"

	"github.com/mccgate/mcc/threat/webhook/webhooktest"
)

// waitFor bounds polling loops: long enough for a loaded 2-core machine.
const waitFor = webhooktest.WaitFor

// testToken is the Authorization the sinks under test send and the
// receiver requires.
const testToken = "Bearer t0ken"

// newReceiver is the shared receiver, requiring the test sinks' token.
func newReceiver(t testing.TB) *webhooktest.Receiver {
	t.Helper()
	r := webhooktest.NewReceiver(t)
	r.RequireHeader("Authorization", testToken)
	return r
}
