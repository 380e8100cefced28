//go:build !unix

package pki

// lockDir is a no-op where flock is unavailable; run one issuance at a time
// per CA directory there.
func lockDir(dir string) (func(), error) { return func() {}, nil }
