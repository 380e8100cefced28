// Package testport finds loopback ports for tests that start servers.
package testport

import (
	"net"
	"strconv"
	"testing"
)

// Pair returns a loopback port that was free a moment ago together with
// the port after it: the quickstart serves its demo enrollment listener
// on the port after the gateway's, and tests of several packages start
// quickstarts at the same time.
func Pair(t testing.TB) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		ln.Close()
		if err == nil {
			next.Close()
			return strconv.Itoa(port)
		}
	}
	t.Fatal("no two consecutive free loopback ports in 50 tries")
	return ""
}
