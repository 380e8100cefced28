package caddymod

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// resolved are the app's settings with Caddy's placeholders expanded, and
// its provisioned store and sink modules (which expand their own).
type resolved struct {
	setsFile string
	node     string
	store    ScoreStore
	sinks    []EventSink
}

// resolve expands the placeholders of the fusion set file and the node
// name. {env.NAME} reads an environment variable and {file.PATH} a file's
// contents (one trailing newline dropped), both at provisioning, so the
// config Caddy keeps, serves on its admin /config and autosaves holds the
// placeholder, never the value. An unknown placeholder, or one that expands
// to nothing (an unset variable, a missing file), is an error naming the
// setting and the placeholder, never the value. The store and the sinks
// expand theirs when they are provisioned (loadPlugins).
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
	if r.setsFile, err = expand("fusion_sets", a.FusionSetsFile); err != nil {
		return r, err
	}
	if r.node, err = expand("node", a.Node); err != nil {
		return r, err
	}
	return r, nil
}
