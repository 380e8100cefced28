package caddymod

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat/storeurl"
)

// resolved are the app's settings with Caddy's placeholders expanded.
type resolved struct {
	store    string
	setsFile string
	node     string
	sinks    []SinkConfig
}

// resolve expands the placeholders of every setting that may hold a secret
// or a deployment-specific value: the store URL, the fusion set file, the
// node name and the sinks' paths. {env.NAME} reads an environment variable
// and {file.PATH} a file's contents (one trailing newline dropped), both at
// provisioning, so the config Caddy keeps, serves on its admin /config and
// autosaves holds the placeholder, never the secret. An unknown placeholder,
// or one that expands to nothing (an unset variable, a missing file), is an
// error naming the setting and the placeholder, never the value.
func (a *App) resolve(repl *caddy.Replacer) (resolved, error) {
	var (
		r   resolved
		err error
	)
	expand := func(what, v string) (string, error) {
		if !strings.Contains(v, "{") {
			return v, nil
		}
		out, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		return out, nil
	}
	if r.store, err = expand("store", a.Store); err != nil {
		return r, err
	}
	if r.store != "" && r.store != storeurl.Memory &&
		!strings.HasPrefix(r.store, "redis://") && !strings.HasPrefix(r.store, "rediss://") {
		what := "store"
		if r.store != a.Store {
			what = "store (after expanding " + a.Store + ")"
		}
		return r, fmt.Errorf("%s: want memory or a redis:// or rediss:// URL, got %q", what, storeurl.Redact(r.store))
	}
	if r.setsFile, err = expand("fusion_sets", a.FusionSetsFile); err != nil {
		return r, err
	}
	if r.node, err = expand("node", a.Node); err != nil {
		return r, err
	}
	for i, s := range a.Sinks {
		if s.Path, err = expand(fmt.Sprintf("sinks[%d] path", i), s.Path); err != nil {
			return r, err
		}
		r.sinks = append(r.sinks, s)
	}
	return r, nil
}

// warnInlineSecrets warns when the config itself holds the store's password:
// Caddy serves it to anyone who can read the admin /config and writes it to
// autosave.json.
func (a *App) warnInlineSecrets() {
	if strings.Contains(a.Store, "{") {
		return
	}
	u, err := url.Parse(a.Store)
	if err != nil || u.User == nil {
		return
	}
	if _, ok := u.User.Password(); ok {
		a.logger.Warn("the store URL holds a password in Caddy's config, which Caddy serves on its admin /config and writes to autosave.json; "+
			"write it as a placeholder instead, e.g. `store redis {env.MCC_REDIS_URL}` or redis://:{file./run/secrets/redis-password}@host:6379/0",
			zap.String("store", storeurl.Redact(a.Store)))
	}
}
