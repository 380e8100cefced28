// Package client is a small Go client for mcc server's API (/v1): what a
// CI pipeline does with a token (issue a build, revoke, look a certificate
// up, verify a record) and what the CLI's --server mode runs. An API error
// comes back as a *Problem carrying the server's problem type and detail.
//
// The token never leaves this package except in the Authorization header,
// and only over TLS or to a loopback address.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mccgate/mcc/internal/secure"
)

// Options configure a Client.
type Options struct {
	// Server is the base URL, e.g. https://mcc.example.com (a path prefix
	// is kept: https://gw.example.com/mcc). Plain http is accepted only
	// for a loopback host: the token would travel in clear otherwise.
	Server string
	// TokenFile holds the API token (one trailing newline is dropped).
	// Token, when set, is used instead.
	TokenFile string
	Token     string
	// CAFile is a PEM file of the CA(s) that sign the server's TLS
	// certificate; when set, only they are trusted (a private CA).
	CAFile string
	// Timeout bounds each request (default 60 s).
	Timeout time.Duration
	// Retries is how often a request that is safe to repeat (a read, or
	// a write with an idempotency key) is retried after a network error,
	// 429 or 502/503/504 (default 2; negative: none).
	Retries int
	// UserAgent is sent with every request.
	UserAgent string
	// Transport replaces the HTTP transport (tests); CAFile is then ignored.
	Transport http.RoundTripper
	// ClientCertificate is the app's certificate, for the enrollment
	// routes (a build certificate to enroll, an install certificate to
	// renew). With it no token is needed, and none is sent unless given.
	ClientCertificate *tls.Certificate
}

// Client calls one mcc server.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	retries int
	agent   string
	// wait is how long to sleep before a retry (tests shorten it).
	wait func(ctx context.Context, d time.Duration) error
}

// maxResponse bounds a response body: the largest answers are builds
// with two bundles and list pages, far below this.
const maxResponse = 16 << 20

// New checks the options and returns a client. It reads the token file
// and the CA file now, so a bad path fails before any request.
func New(o Options) (*Client, error) {
	base, err := parseServer(o.Server)
	if err != nil {
		return nil, err
	}
	token := o.Token
	if token == "" && !(o.ClientCertificate != nil && o.TokenFile == "") {
		if o.TokenFile == "" {
			return nil, errors.New("no API token: give a token file (--token-file)")
		}
		if token, err = secure.ReadSecretFile(o.TokenFile); err != nil {
			return nil, fmt.Errorf("reading the token file: %w", err)
		}
	}
	if token != "" || o.ClientCertificate == nil {
		if err := checkToken(token); err != nil {
			return nil, err
		}
	}
	rt := o.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.ClientCertificate != nil {
			t.TLSClientConfig.Certificates = []tls.Certificate{*o.ClientCertificate}
		}
		if o.CAFile != "" {
			pool, err := secure.LoadPool(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("server CA (--server-ca): %w", err)
			}
			t.TLSClientConfig.RootCAs = pool
		}
		rt = t
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	retries := o.Retries
	switch {
	case retries == 0:
		retries = 2
	case retries < 0:
		retries = 0
	}
	agent := o.UserAgent
	if agent == "" {
		agent = "mcc-client"
	}
	return &Client{
		base:  base,
		token: token,
		http: &http.Client{
			Transport: rt,
			Timeout:   timeout,
			// The API never redirects; following one could carry the
			// request (and its body) somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		retries: retries,
		agent:   agent,
		wait:    sleep,
	}, nil
}

// parseServer reads the base URL and applies the transport rule.
func parseServer(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("no server URL (--server)")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("server URL %q: want https://HOST[:PORT] (or http:// to a loopback address)", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %s: no user info, query or fragment (the token goes in --token-file)", u.Redacted())
	}
	if u.Scheme == "http" && !secure.IsLoopback(u.Host) {
		return nil, fmt.Errorf("server URL %s: plain http is refused off loopback (the token would travel in clear); use https", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// checkToken refuses a token that cannot be one, without ever printing it.
func checkToken(t string) error {
	if !strings.HasPrefix(t, "mcc_") {
		return errors.New("the token file does not hold an mcc API token (they start with mcc_)")
	}
	for _, r := range t {
		if r <= ' ' || r > '~' {
			return errors.New("the token file holds more than the token (spaces, several lines or control characters)")
		}
	}
	return nil
}

// Problem is an API error: an RFC 9457 problem from the server.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail"`
	Errors []FieldError `json:"errors,omitempty"`
	// ReasonCode is the threat event reason of a refused enrollment or
	// renewal (CERT_REVOKED, CERT_KIND_REFUSED, RATE_ANOMALY, ...).
	ReasonCode string `json:"reasonCode,omitempty"`
	// RetryAfter is the server's Retry-After on a 429 or 503.
	RetryAfter time.Duration `json:"-"`
}

// FieldError locates one problem of a request.
type FieldError struct {
	Field  string `json:"field"`
	Line   int    `json:"line,omitempty"`
	Detail string `json:"detail"`
}

// problemPrefix starts every problem type the server sends.
const problemPrefix = "urn:mcc:problem:"

// Name is the problem type without its prefix ("not-found").
func (p *Problem) Name() string { return strings.TrimPrefix(p.Type, problemPrefix) }

func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server: %s (%s, HTTP %d)", p.Detail, p.Name(), p.Status)
	if p.ReasonCode != "" {
		fmt.Fprintf(&b, " [%s]", p.ReasonCode)
	}
	for _, e := range p.Errors {
		b.WriteString("\n  ")
		if e.Field != "" {
			b.WriteString(e.Field)
			if e.Line > 0 {
				fmt.Fprintf(&b, " (line %d)", e.Line)
			}
			b.WriteString(": ")
		}
		b.WriteString(e.Detail)
	}
	return b.String()
}

// IsProblem reports whether err is (or wraps) a problem named name.
func IsProblem(err error, name string) bool {
	var p *Problem
	return errors.As(err, &p) && p.Name() == name
}

// request is one API call.
type request struct {
	method, path string
	query        url.Values
	body         any
	header       http.Header
	// repeatable marks a write that is safe to send twice (an idempotency
	// key, or an operation that is idempotent by nature).
	repeatable bool
}

// response is a successful answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r, retrying what is safe to retry, and returns the answer of a
// 2xx; any other status is a *Problem (or an error saying the answer was
// not one).
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var body []byte
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
	}
	u := *c.base
	u.Path += r.path
	u.RawQuery = r.query.Encode()
	retry := r.method == http.MethodGet || r.repeatable
	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, r, u.String(), body)
		last := !retry || attempt >= c.retries
		if err != nil {
			if last || ctx.Err() != nil {
				return nil, err
			}
			if werr := c.wait(ctx, backoff(attempt, 0)); werr != nil {
				return nil, err
			}
			continue
		}
		if resp.status >= 200 && resp.status < 300 {
			return resp, nil
		}
		perr := problemOf(resp)
		var p *Problem
		if last || !errors.As(perr, &p) || !retryStatus(p.Status) {
			return nil, perr
		}
		if werr := c.wait(ctx, backoff(attempt, p.RetryAfter)); werr != nil {
			return nil, perr
		}
	}
}

// once sends one attempt.
func (c *Client) once(ctx context.Context, r request, target string, body []byte) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", c.agent)
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error names the URL, never the header: safe to show.
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", r.method, r.path, err)
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("%s %s: the answer is larger than %d bytes", r.method, r.path, maxResponse)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// problemOf turns a non-2xx answer into an error.
func problemOf(r *response) error {
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	var p Problem
	if mt != "application/problem+json" || json.Unmarshal(r.body, &p) != nil || p.Type == "" {
		// A proxy's error page, not the API: say what came back, not
		// the page itself.
		return fmt.Errorf("server answered HTTP %d %s with %q, not an API problem (is --server the mcc server?)",
			r.status, http.StatusText(r.status), mt)
	}
	if p.Status == 0 {
		p.Status = r.status
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err == nil && s > 0 {
		p.RetryAfter = time.Duration(s) * time.Second
	}
	return &p
}

func retryStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// maxWait caps one pause between attempts, whatever Retry-After says.
const maxWait = 30 * time.Second

// backoff is the pause before attempt+1: the server's Retry-After, else
// 1 s, 2 s, 4 s...
func backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := retryAfter
	if d <= 0 {
		d = time.Second << attempt
	}
	return min(d, maxWait)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// decode reads a JSON answer into v.
func decode(r *response, v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("reading the server's answer: %w", err)
	}
	return nil
}
