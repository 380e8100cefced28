// Package storeurl opens the threat.Store that a store setting names: the
// fusion set file's `store:` key, Caddy's `store` option, `mcc authz`.
package storeurl

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

// Memory is the setting for the embedded store (also what "" means).
const Memory = "memory"

// Open returns the store that setting names:
//
//	"" or "memory"                          the embedded memory store (per gateway)
//	redis://[[user]:password@]host:port/db  Redis, shared by every gateway using it
//	rediss://...                            Redis over TLS
//
// The Redis store starts even when Redis is down (it scores nothing until
// Redis answers, and says so once in logger); a wrong password or a
// malformed URL is an error. The error never contains the password.
func Open(ctx context.Context, setting string, logger *zap.Logger) (threat.Store, error) {
	switch s := strings.TrimSpace(setting); {
	case s == "" || s == Memory:
		return threat.NewMemoryStore(nil), nil
	case strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://"):
		st, err := redisstore.New(ctx, s, redisstore.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("store: %q is neither %q nor a redis:// or rediss:// URL", Redact(s), Memory)
	}
}

// Redact returns setting with any password in it replaced by "xxxxx", for
// logs and error messages.
func Redact(setting string) string {
	scheme, rest, ok := strings.Cut(setting, "://")
	if !ok {
		return setting
	}
	// The last '@': a password may hold one unescaped.
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return setting
	}
	userinfo, host := rest[:at], rest[at+1:]
	user, _, hasPass := strings.Cut(userinfo, ":")
	if !hasPass {
		return setting
	}
	return scheme + "://" + user + ":xxxxx@" + host
}
