// Package server assembles mcc server from its parts: the database
// (server/store), the key-encryption key (server/keys), one CA per fusion
// set (server/authority), API tokens (server/auth) and the HTTP API
// (server/api), plus the background work the API needs (re-signing CRLs
// before they go stale). `mcc server` and the end-to-end tests open it the
// same way, so what the tests run is what operators run.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/console"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
)

// Defaults of Config's zero values.
const (
	DefaultRateLimit = 50
	DefaultRateBurst = 100
	// DefaultEnrollRateLimit and DefaultEnrollRateBurst limit the
	// enrollment listener per client address (IPv4 /32, IPv6 /64): an app
	// enrolls once and renews now and then, so this only bounds a client
	// hammering the routes (a carrier NAT shares one address: raise it
	// there, the set's installs.enrollment limits still count).
	DefaultEnrollRateLimit = 5
	DefaultEnrollRateBurst = 50
	DefaultCRLRefresh      = time.Minute
	// DefaultRollupRetention keeps the console's per-minute counts for
	// about a year (a row per minute, fusion set, reason and action).
	DefaultRollupRetention = 400 * 24 * time.Hour
	// KEKFileName is the key-encryption key inside the data directory.
	KEKFileName = "kek.key"
)

// enrollmentRetention is how long enrollment rows are kept: longer than
// the longest enrollment window and install certificate lifetime.
const enrollmentRetention = 31 * 24 * time.Hour

// Config says where the server keeps its state and how it behaves.
type Config struct {
	// DataDir holds the SQLite database (and, by default, the KEK).
	DataDir string
	// DatabaseURL is a postgres:// URL; it wins over DataDir. Several
	// instances may share one database.
	DatabaseURL string
	// KEKFile is the key-encryption key that seals CA keys and stored
	// responses. Default DataDir/kek.key, created when missing. Required
	// with DatabaseURL, and it must then exist: every instance has to
	// share the same key, so none may quietly make its own (create it once
	// with keys.LoadOrCreate, which `mcc server kek create` runs).
	KEKFile string
	// RateLimit is the requests per second allowed per token (burst
	// RateBurst). Zero means DefaultRateLimit; a negative value turns the
	// limit off.
	RateLimit float64
	RateBurst int
	// EnrollRateLimit is the requests per second allowed per client
	// address on the enrollment listener (burst EnrollRateBurst); zero is
	// DefaultEnrollRateLimit, negative turns the limit off.
	EnrollRateLimit float64
	EnrollRateBurst int
	// CRLRefresh is how often Run checks for CRLs to re-sign (default
	// one minute).
	CRLRefresh time.Duration
	// Version is what /v1/health reports.
	Version string
	// BanStore is the gateways' shared store (a redis:// or rediss:// URL,
	// placeholders expanded): the console lists its live fail-safe bans,
	// and an admin lifts one. Empty: the console has no bans view data.
	BanStore string
	// XDSStatus are the /status URLs of the mcc xds instances whose Envoy
	// nodes the console's gateways view shows; XDSStatusTokenFile holds
	// their admin token (mcc xds --admin-token-file) and XDSStatusCA the
	// PEM CA of an https admin port, when not the system roots.
	XDSStatus          []string
	XDSStatusTokenFile string
	XDSStatusCA        string
	// EventRetention is how long raw threat events are kept, by their own
	// time (zero keeps them). The console's per-minute rollups are kept
	// RollupRetention (default DefaultRollupRetention), at least as long.
	EventRetention  time.Duration
	RollupRetention time.Duration
	// ConsoleSessionTTL is how long a console sign-in lasts
	// (console.DefaultSessionTTL when zero).
	ConsoleSessionTTL time.Duration
	Logger            *zap.Logger
	Now               func() time.Time
}

// Server is an assembled mcc server.
type Server struct {
	cfg    Config
	log    *zap.Logger
	db     *store.DB
	tokens *auth.Tokens
	cas    *authority.Authorities
	api    *api.API
	con    *console.Console
	// closeBans closes the shared store of the bans view (nil without).
	closeBans func() error

	closeOnce sync.Once
	closeErr  error
}

// Open opens (and migrates) the database, loads the KEK and builds the
// API. Close releases what Open took.
func Open(ctx context.Context, c Config) (*Server, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, store.Options{DataDir: c.DataDir, URL: c.DatabaseURL, Logger: c.Logger})
	if err != nil {
		return nil, err
	}
	cas, err := db.ListCAs(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	sealer, err := loadKEK(c, len(cas) > 0)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Server{cfg: c, log: c.Logger, db: db}
	s.tokens = auth.NewTokens(db, c.Now)
	s.cas = authority.New(db, sealer, c.Now)
	var limiter *auth.Limiter
	if c.RateLimit > 0 {
		limiter = auth.NewLimiter(c.RateLimit, c.RateBurst)
	}
	var addressLimiter *auth.Limiter
	if c.EnrollRateLimit > 0 {
		addressLimiter = auth.NewLimiter(c.EnrollRateLimit, c.EnrollRateBurst)
	}
	s.api = api.New(api.Deps{
		AddressLimiter: addressLimiter,
		DB:             db,
		Tokens:         s.tokens,
		Limiter:        limiter,
		Keys:           sealer,
		Authorities:    s.cas,
		Log:            c.Logger,
		Now:            c.Now,
		Version:        c.Version,
	})
	var bans threat.BanAdmin
	if c.BanStore != "" {
		// Redis down at start is not an error (the view says so when it
		// cannot read); a malformed URL or a wrong password is.
		if bans, s.closeBans, err = storeurl.OpenBanAdmin(ctx, c.BanStore, c.Logger.Named("bans")); err != nil {
			db.Close()
			return nil, fmt.Errorf("server: --ban-store: %w", err)
		}
	}
	xdsSources, err := openXDSStatus(c)
	if err != nil {
		db.Close()
		if s.closeBans != nil {
			_ = s.closeBans()
		}
		return nil, err
	}
	s.con = console.New(console.Deps{DB: db, Tokens: s.tokens, Log: c.Logger.Named("console"), Now: c.Now,
		SessionTTL: c.ConsoleSessionTTL, Bans: bans, XDS: xdsSources})
	// Every stored CA key opens now, or the start fails: a wrong
	// --kek-file (another instance's, or a restored database without its
	// key) is found here, not at the first issuance hours later.
	for _, row := range cas {
		if _, err := s.cas.CA(ctx, row.FusionSet); err != nil {
			db.Close()
			return nil, fmt.Errorf("server: %s does not open the stored CA keys (%w); is it the key-encryption key this database was written with?", c.KEKFile, err)
		}
	}
	return s, nil
}

// loadKEK loads the key-encryption key. With SQLite it is created beside
// the database on the first start, while no CA key is sealed yet. With
// PostgreSQL it must exist: two instances must not each create their own,
// and a database that holds sealed CA keys needs the key they were sealed
// with, never a fresh one.
func loadKEK(c Config, sealedKeys bool) (*keys.Sealer, error) {
	if c.DatabaseURL == "" && !sealedKeys {
		return keys.LoadOrCreate(c.KEKFile)
	}
	s, err := keys.Load(c.KEKFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("server: %w (give the key-encryption key the database's CA keys are sealed with; "+
			"for a new PostgreSQL setup create it once with `mcc server kek create --kek-file %s` and give every instance a copy)", err, c.KEKFile)
	}
	return s, err
}

// withDefaults fills the zero values and refuses contradictions.
func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" && c.DatabaseURL == "" {
		return c, errors.New("server: give a data directory (--data) or a PostgreSQL URL (--database)")
	}
	if c.KEKFile == "" {
		if c.DatabaseURL != "" {
			return c, errors.New("server: --database needs --kek-file: every instance must share one key-encryption key")
		}
		c.KEKFile = filepath.Join(c.DataDir, KEKFileName)
	}
	rateDefaults(&c.RateLimit, &c.RateBurst, DefaultRateLimit, DefaultRateBurst)
	rateDefaults(&c.EnrollRateLimit, &c.EnrollRateBurst, DefaultEnrollRateLimit, DefaultEnrollRateBurst)
	if c.EventRetention < 0 {
		return c, errors.New("server: the event retention must not be negative")
	}
	if c.RollupRetention <= 0 {
		c.RollupRetention = DefaultRollupRetention
	}
	c.RollupRetention = max(c.RollupRetention, c.EventRetention)
	if c.CRLRefresh <= 0 {
		c.CRLRefresh = DefaultCRLRefresh
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Handler is the HTTP API, and the console under /console.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	con := s.con.Handler()
	mux.Handle(console.Prefix, con)
	mux.Handle(console.Prefix+"/", con)
	mux.Handle("/", s.api.Handler())
	return mux
}

// EnrollHandler is the enrollment listener's handler: the enroll and
// renew routes only. Serve it with EnrollTLS.
func (s *Server) EnrollHandler() http.Handler { return s.api.EnrollHandler() }

// EnrollTLS is the enrollment listener's TLS configuration: base (the
// server certificate) asking every client for its certificate. The chain
// is checked by the route against the fusion set named in the path (each
// set has its own CA, and sets come and go while the server runs), so the
// handshake only requires a certificate and its proof of possession.
func EnrollTLS(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.ClientAuth = tls.RequireAnyClientCert
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// openXDSStatus prepares the console's reader of each --xds-status URL.
func openXDSStatus(c Config) ([]*console.XDSSource, error) {
	if len(c.XDSStatus) == 0 {
		return nil, nil
	}
	token := ""
	if c.XDSStatusTokenFile != "" {
		b, err := os.ReadFile(c.XDSStatusTokenFile)
		if err != nil {
			return nil, fmt.Errorf("server: --xds-status-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("server: --xds-status-token-file %s is empty", c.XDSStatusTokenFile)
		}
	}
	out := make([]*console.XDSSource, 0, len(c.XDSStatus))
	for _, u := range c.XDSStatus {
		src, err := console.NewXDSSource(u, token, c.XDSStatusCA)
		if err != nil {
			return nil, fmt.Errorf("server: --xds-status: %w", err)
		}
		out = append(out, src)
	}
	return out, nil
}

// DB is the server's database (restore records itself through it).
func (s *Server) DB() *store.DB { return s.db }

// Tokens is the server's token store.
func (s *Server) Tokens() *auth.Tokens { return s.tokens }

// Authorities is the CA of every fusion set (`mcc server ca import`).
func (s *Server) Authorities() *authority.Authorities { return s.cas }

// Run does the background work until ctx is done: CRLs are re-signed
// before half their validity has passed, so a gateway that fetches them
// never holds a stale one, and idempotency keys past their 24 hours are
// deleted.
func (s *Server) Run(ctx context.Context) {
	indexed := make(chan struct{})
	go func() { s.indexEvents(ctx); close(indexed) }()
	defer func() { <-indexed }()
	t := time.NewTicker(s.cfg.CRLRefresh)
	defer t.Stop()
	for {
		s.housekeeping(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// The event indexer (store.IndexPendingEvents) trades two costs: a
// larger run writes each index page for more events (ingest measured
// 25,100-25,800 events/s with runs every second, 9,800-9,900 with no
// deferral; a run per 10,000 events cost about a quarter, measured on an
// earlier layout of the index), while every query by device,
// address, serial or request id reads the pending events one by one
// (about 0.9 µs each: 46 ms with 50,000 pending). So it runs once a
// second, or as soon as 25,000 events are pending, in runs of at most
// 50,000, back to back while a backlog lasts.
const (
	eventIndexEvery   = time.Second
	eventIndexPoll    = 250 * time.Millisecond
	eventIndexPending = 25_000
	eventIndexRun     = 50_000
)

// indexEvents runs the event indexer until ctx is done. A failure (the
// database away, a full disk) is logged when it starts, at most once a
// minute while it lasts, and when it ends; the pending events stay
// findable meanwhile, and the gateways view shows how many there are.
func (s *Server) indexEvents(ctx context.Context) {
	t := time.NewTicker(eventIndexPoll)
	defer t.Stop()
	var last, failingSince, loggedAt time.Time
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if failingSince.IsZero() {
			failingSince = now
		}
		if now.Sub(loggedAt) >= time.Minute {
			loggedAt = now
			s.log.Error("indexing events", zap.Error(err), zap.Duration("failing_for", now.Sub(failingSince).Round(time.Second)))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		span, err := s.db.PendingSpan(ctx)
		if err != nil {
			fail(err)
			continue
		}
		if span == 0 || (span < eventIndexPending && time.Since(last) < eventIndexEvery) {
			continue
		}
		last = time.Now()
		ok := true
		for {
			n, err := s.db.IndexPendingEvents(ctx, eventIndexRun)
			if err != nil {
				fail(err)
				ok = false
				break
			}
			if n < eventIndexRun {
				break
			}
		}
		if ok && !failingSince.IsZero() {
			s.log.Info("indexing events again", zap.Duration("failed_for", time.Since(failingSince).Round(time.Second)))
			failingSince, loggedAt = time.Time{}, time.Time{}
		}
	}
}

// housekeeping runs one pass; a failure is logged and retried at the next
// tick (a database blip must not stop the loop).
func (s *Server) housekeeping(ctx context.Context) {
	if err := s.api.RefreshCRLs(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("re-signing CRLs", zap.Error(err))
	}
	if err := s.api.PurgeIdempotency(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("purging idempotency keys", zap.Error(err))
	}
	// Enrollment rows count within a week at most, and stop a second
	// renewal of a certificate that lives 30 days at most.
	if _, err := s.db.PurgeEnrollments(ctx, s.cfg.Now().Add(-enrollmentRetention)); err != nil && ctx.Err() == nil {
		s.log.Error("purging enrollments", zap.Error(err))
	}
	s.purgeConsole(ctx)
}

// gatewayRetention is how long the gateways view remembers an instance
// that stopped delivering events (renamed or retired ones leave).
const gatewayRetention = 30 * 24 * time.Hour

// purgeConsole applies the event and rollup retention and drops expired
// console sessions.
func (s *Server) purgeConsole(ctx context.Context) {
	now := s.cfg.Now()
	if s.cfg.EventRetention > 0 {
		if _, err := s.db.PurgeEvents(ctx, now.Add(-s.cfg.EventRetention)); err != nil && ctx.Err() == nil {
			s.log.Error("purging events", zap.Error(err))
		}
	}
	if _, err := s.db.PurgeRollups(ctx, now.Add(-s.cfg.RollupRetention)); err != nil && ctx.Err() == nil {
		s.log.Error("purging event rollups", zap.Error(err))
	}
	if _, err := s.db.PurgeSessions(ctx, now); err != nil && ctx.Err() == nil {
		s.log.Error("purging console sessions", zap.Error(err))
	}
	if _, err := s.db.PurgeGateways(ctx, now.Add(-gatewayRetention)); err != nil && ctx.Err() == nil {
		s.log.Error("purging gateway instances", zap.Error(err))
	}
}

// Close closes the database. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("server: closing the database: %w", err)
		}
		if s.closeBans != nil {
			_ = s.closeBans()
		}
	})
	return s.closeErr
}

// rateDefaults applies a limit's defaults: zero takes the default rate,
// a negative rate turns the limit off (0), and a burst below one takes
// the default burst.
func rateDefaults(rate *float64, burst *int, defRate float64, defBurst int) {
	switch {
	case *rate == 0:
		*rate = defRate
	case *rate < 0:
		*rate = 0
	}
	if *burst <= 0 {
		*burst = defBurst
	}
}
