// Package auth is who may call mcc server: API tokens with scopes, stored
// hashed, and a rate limit per token.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Scope is one permission a token carries.
type Scope string

// The scopes. Admin implies every other.
const (
	ScopeRead        Scope = "read"
	ScopeIssue       Scope = "issue"
	ScopeRevoke      Scope = "revoke"
	ScopeEventsWrite Scope = "events:write"
	ScopeAdmin       Scope = "admin"
)

// ScopeClientCert marks the routes an app calls with its certificate
// (enrollment and renewal) instead of a token. No token carries it.
const ScopeClientCert Scope = "client-certificate"

// AllScopes lists the scopes in the order help texts show them.
var AllScopes = []Scope{ScopeRead, ScopeIssue, ScopeRevoke, ScopeEventsWrite, ScopeAdmin}

// ParseScopes reads a comma-separated scope list ("issue,read"), sorted and
// without duplicates. An empty list or an unknown scope is an error.
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for _, part := range strings.Split(s, ",") {
		p := Scope(strings.TrimSpace(part))
		if p == "" {
			continue
		}
		if !slices.Contains(AllScopes, p) {
			return nil, fmt.Errorf("unknown scope %q (want %s)", p, scopeList())
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scope given (want " + scopeList() + ")")
	}
	slices.Sort(out)
	return out, nil
}

func scopeList() string {
	names := make([]string, len(AllScopes))
	for i, s := range AllScopes {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Caller is the token a request was authenticated with.
type Caller struct {
	TokenID   string
	TokenName string
	Scopes    []Scope
	// Service names the server itself when it acts on its own (the
	// enrollment revoking a forked install), with no token behind it.
	Service string
}

// Name is who the caller is in a record: the token's name, or the
// service's.
func (c *Caller) Name() string {
	if c != nil && c.Service != "" {
		return c.Service
	}
	if c == nil {
		return ""
	}
	return c.TokenName
}

// Has reports whether the caller may act with scope s (admin may do all).
func (c *Caller) Has(s Scope) bool {
	if c == nil {
		return false
	}
	return slices.Contains(c.Scopes, s) || slices.Contains(c.Scopes, ScopeAdmin)
}

// Actor is the name the audit log records for the caller.
func (c *Caller) Actor() string {
	if c == nil {
		return "anonymous"
	}
	if c.Service != "" {
		return "server:" + c.Service
	}
	return "token:" + c.TokenName
}
