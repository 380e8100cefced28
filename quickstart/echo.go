package quickstart

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mccgate/mcc/fusion"
)

// echoPrefix marks the headers the echo upstream reports back: the ones the
// fusion_set handler passes on (Mcc-Threat-Event, Mcc-Reason-Code, ...).
const echoPrefix = "Mcc-"

// echoReply is what the built-in upstream answers: the request as the
// backend sees it behind the gateway.
type echoReply struct {
	Upstream string            `json:"upstream"`
	Method   string            `json:"method"`
	Host     string            `json:"host"`
	Path     string            `json:"path"`
	Headers  map[string]string `json:"mccHeaders"`
	// ThreatEvent is Mcc-Threat-Event decoded, so the detection mode's
	// event is readable in the terminal.
	ThreatEvent json.RawMessage `json:"threatEvent,omitempty"`
}

// echoServer is the quickstart's stand-in for an app backend: a plain HTTP
// server on a loopback port that answers every request with echoReply.
type echoServer struct {
	srv  *http.Server
	addr string
	done chan error
}

// startEcho listens on a free loopback port and serves until shutdown.
func startEcho() (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the echo upstream: %w", err)
	}
	e := &echoServer{
		srv: &http.Server{
			Handler:           http.HandlerFunc(serveEcho),
			ReadHeaderTimeout: 10 * time.Second,
		},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { e.done <- e.srv.Serve(ln) }()
	return e, nil
}

// shutdown stops the server, waiting for in-flight requests until ctx ends.
func (e *echoServer) shutdown(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	if serr := <-e.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

func serveEcho(w http.ResponseWriter, r *http.Request) {
	reply := echoReply{
		Upstream: "mcc quickstart echo",
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.URL.RequestURI(),
		Headers:  map[string]string{},
	}
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		if strings.HasPrefix(name, echoPrefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		reply.Headers[name] = strings.Join(r.Header.Values(name), ", ")
	}
	if v := r.Header.Get(fusion.HeaderEvent); v != "" {
		if raw, err := base64.RawURLEncoding.DecodeString(v); err == nil && json.Valid(raw) {
			reply.ThreatEvent = raw
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(reply)
}
