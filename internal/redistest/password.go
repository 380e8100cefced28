package redistest

import (
	"crypto/rand"
	"encoding/hex"
)

// RequirePassword sets a fresh random password on the server (CONFIG SET
// requirepass) and returns it: from then on Redis refuses any client that
// does not send it, which is what the secret-placeholder tests rely on.
func (s *Server) RequirePassword() string {
	s.t.Helper()
	buf := make([]byte, 12)
	if _, err := rand.Read(buf); err != nil {
		s.t.Fatal(err)
	}
	password := "pw-" + hex.EncodeToString(buf)
	if reply, err := s.Do("CONFIG", "SET", "requirepass", password); err != nil || reply != "+OK" {
		s.t.Fatalf("redistest: CONFIG SET requirepass: %q %v", reply, err)
	}
	return password
}
