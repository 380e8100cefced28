// Package storeurl opens the threat.Store that a store setting names: the
// fusion set file's `store:` key, Caddy's `store` option, `mcc authz`.
package storeurl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

// Memory is the setting for the embedded store (also what "" means).
const Memory = "memory"

// Kind is what a store setting names.
type Kind int

const (
	// KindMemory is the embedded store, one per gateway process.
	KindMemory Kind = iota
	// KindRedis is a Redis shared by every gateway using it.
	KindRedis
)

// Parse is the one check of a store setting (placeholders already
// expanded), for every place that takes one: Caddy's store, the fusion
// file's store key, `mcc authz` and `mcc ban`. It returns the setting
// trimmed and its kind:
//
//	"" or "memory"                          the embedded memory store (per gateway)
//	redis://[[user]:password@]host:port/db  Redis, shared by every gateway using it
//	rediss://...                            Redis over TLS
//
// Its error is the same everywhere and never contains a password.
func Parse(setting string) (string, Kind, error) {
	return ParseExpanded(setting, setting)
}

// ParseExpanded is Parse for a setting written with {env.NAME} or
// {file.PATH} placeholders: expanded is checked, and the error quotes
// written, since the expanded text may be the password alone.
func ParseExpanded(expanded, written string) (string, Kind, error) {
	switch s := strings.TrimSpace(expanded); {
	case s == "" || s == Memory:
		return Memory, KindMemory, nil
	case strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://"):
		return s, KindRedis, nil
	default:
		shown, how := Redact(s), ""
		if expanded != written {
			shown, how = Redact(written), " once its placeholders are expanded"
		}
		return "", 0, fmt.Errorf("store %q is neither %q nor a redis:// or rediss:// URL%s", shown, Memory, how)
	}
}

// Open returns the store that setting names (see Parse).
//
// The Redis store starts even when Redis is down (it scores nothing until
// Redis answers, and says so once in logger); a wrong password or a
// malformed URL is an error. The error never contains the password.
func Open(ctx context.Context, setting string, logger *zap.Logger) (threat.Store, error) {
	s, kind, err := Parse(setting)
	if err != nil {
		return nil, err
	}
	if kind == KindMemory {
		return threat.NewMemoryStore(nil), nil
	}
	st, err := redisstore.New(ctx, s, redisstore.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return st, nil
}

// OpenBanAdmin opens the shared store that setting names for managing
// its bans (`mcc ban`, the server's console). A memory store lives inside
// one gateway process, so it cannot be: that is an error that says so. An
// operator's request may wait longer than a gateway's, hence the longer
// timeouts. The error never contains the password.
func OpenBanAdmin(ctx context.Context, setting string, logger *zap.Logger) (threat.BanAdmin, func() error, error) {
	s, kind, err := Parse(setting)
	if err != nil {
		return nil, nil, err
	}
	if kind == KindMemory {
		return nil, nil, fmt.Errorf(`store "memory" lives inside one gateway process: its bans cannot be listed or lifted from outside it, and end with their duration or a restart of that gateway. Share a Redis store between the gateways (store: redis://...) to manage bans`)
	}
	st, err := redisstore.New(ctx, s, redisstore.Options{Logger: logger,
		DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	return st, st.Close, nil
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
