// Package testport finds loopback ports for tests that start servers.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
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

// Outside returns a loopback port that is free now and lies below the
// kernel's ephemeral range: a test that must write a port into a config
// before the server binds it cannot lose it to another test's ":0"
// listener, which the kernel serves from that range only.
func Outside(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return strconv.Itoa(port)
		}
	}
	t.Fatal("no free loopback port below the ephemeral range in 100 tries")
	return ""
}
