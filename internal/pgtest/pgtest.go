// Package pgtest runs a real PostgreSQL for tests: a private cluster made
// with initdb in a temporary directory, listening on a free loopback port
// with password authentication, fsync off, stopped and removed when the
// test (Start) or the test binary (Shared with Main) ends.
//
// PostgreSQL refuses to run as root, and CI runs as root: there the
// cluster runs as the `postgres` user that Debian's package creates.
// A missing PostgreSQL fails the test with the line that installs it; it
// never skips, because a skipped database test proves nothing.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// installHint is what a test failure says when PostgreSQL is missing.
const installHint = "install it, e.g. `apt-get install -y postgresql` (Debian puts the binaries in /usr/lib/postgresql/<version>/bin)"

// startTimeout bounds initdb plus the first successful connection.
// Generous: tests share a loaded machine.
const startTimeout = 60 * time.Second

// superuser is the cluster's only role.
const superuser = "pgtest"

// Server is one PostgreSQL cluster owned by a test or a test binary.
type Server struct {
	dir      string // holds data/, the password file and the log
	port     int
	password string

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{}
	admin  *sql.DB // connection to the "postgres" database, for CREATE DATABASE
	made   map[string]bool
	serial int
}

// Start runs a PostgreSQL cluster for t and stops it in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

var shared struct {
	sync.Mutex
	inMain bool
	srv    *Server
	err    error
}

// Main runs the package's tests and then stops the cluster that Shared
// started. Use it from TestMain when tests call Shared:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	shared.Unlock()
	os.Exit(code)
}

// Shared returns the test binary's one cluster, starting it on first use,
// so a package with many database tests pays initdb once. Give each test
// its own database (NewDatabase). The package's TestMain must call Main,
// which stops the cluster when the tests are done.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.inMain {
		t.Fatal("pgtest: Shared needs `func TestMain(m *testing.M) { pgtest.Main(m) }` in the package, which stops the cluster; or use Start")
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = start()
	}
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.srv
}

// Password is the superuser's password, which every URL carries: tests
// check that it never appears in logs, errors or responses.
func (s *Server) Password() string { return s.password }

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// dbName is what CREATE DATABASE accepts here without quoting surprises.
var dbName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// notInName is what NewDatabase replaces in a test's name.
var notInName = regexp.MustCompile(`[^a-z0-9_]+`)

// URL is a postgres:// URL for database db (created when it does not exist
// yet), with the password and sslmode=disable (loopback only).
func (s *Server) URL(t testing.TB, db string) string {
	t.Helper()
	if err := s.ensureDatabase(db); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s.url(db)
}

// NewDatabase creates a fresh, empty database named after the test and
// returns its URL: tests sharing a cluster never see each other's rows.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.serial++
	n := s.serial
	s.mu.Unlock()
	name := strings.ToLower(t.Name())
	name = notInName.ReplaceAllString(name, "_")
	suffix := "_" + strconv.Itoa(n)
	if len(name) > 40 {
		name = name[:40]
	}
	name = "t_" + name + suffix
	return s.URL(t, name)
}

func (s *Server) url(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, s.password),
		Host:     s.Addr(),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func (s *Server) ensureDatabase(db string) error {
	if !dbName.MatchString(db) {
		return fmt.Errorf("database name %q: use [a-z_][a-z0-9_]{0,62}", db)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.made[db] || db == "postgres" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var exists bool
	if err := s.admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&exists); err != nil {
		return fmt.Errorf("looking up database %s: %w", db, err)
	}
	if !exists {
		// The name matched dbName, so quoting it is enough.
		if _, err := s.admin.ExecContext(ctx, `CREATE DATABASE "`+db+`"`); err != nil {
			return fmt.Errorf("creating database %s: %w", db, err)
		}
	}
	s.made[db] = true
	return nil
}

// Stop shuts the cluster down (fast shutdown: clients are disconnected)
// and removes its directory. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
	if s.proc != nil {
		_ = s.proc.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			_ = s.proc.Signal(syscall.SIGQUIT)
			<-s.exited
		}
		s.proc = nil
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
		s.dir = ""
	}
}

// binDir finds PostgreSQL's programs: the newest of Debian's
// /usr/lib/postgresql/<version>/bin (not on PATH there), else PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", fmt.Errorf("PostgreSQL (initdb, postgres) not found in /usr/lib/postgresql/*/bin nor PATH: %s", installHint)
	}
	p, _ = filepath.EvalSymlinks(p)
	return filepath.Dir(p), nil
}

// versionOf reads 15 from /usr/lib/postgresql/15/bin (0 when it is not a number).
func versionOf(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return v
}

// runAs is the user PostgreSQL runs as: nil (ourselves) unless we are
// root, which PostgreSQL refuses; then Debian's `postgres` user.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as another user and there is no `postgres` user (%v): %s", err, installHint)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mcc-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, made: map[string]bool{}}
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, err
	}
	s.password, err = randomPassword()
	if err != nil {
		return fail(err)
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return fail(err)
	}
	if cred != nil {
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return fail(fmt.Errorf("handing %s to the postgres user: %w", p, err))
			}
		}
	}
	data := filepath.Join(dir, "data")
	initdb := command(bin, "initdb", cred, dir,
		"-D", data, "-U", superuser, "--pwfile", pwfile, "--auth", "scram-sha-256",
		"-E", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	os.Remove(pwfile)
	// The free port is found by binding and releasing it, so another
	// process may take it in between: try a few ports before giving up.
	var lastErr error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			return fail(err)
		}
		if lastErr = s.run(bin, cred, data); lastErr == nil {
			return s, nil
		}
	}
	return fail(lastErr)
}

// command builds an exec.Cmd for a PostgreSQL program, as the postgres
// user when cred is set. Pdeathsig stops the cluster with the test binary
// even when the binary is killed and cannot run its cleanup.
func command(bin, name string, cred *syscall.Credential, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	return cmd
}

// run starts postgres on s.port and waits until it accepts a login.
func (s *Server) run(bin string, cred *syscall.Credential, data string) error {
	logPath := filepath.Join(s.dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := command(bin, "postgres", cred, s.dir,
		"-D", data,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "dynamic_shared_memory_type=mmap",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()

	admin, err := sql.Open("pgx", s.url("postgres"))
	if err != nil {
		return err
	}
	admin.SetMaxOpenConns(2)
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = admin.PingContext(ctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.admin = admin
			s.mu.Unlock()
			return nil
		}
		select {
		case <-exited:
			admin.Close()
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited on port %d:\n%s", s.port, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			admin.Close()
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			<-exited
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			log, _ := os.ReadFile(logPath)
			return errors.Join(fmt.Errorf("postgres did not accept a login within %v: %v", startTimeout, redact(err, s.password)),
				fmt.Errorf("log:\n%s", log))
		}
	}
}

// redact removes the password from an error text.
func redact(err error, password string) string {
	return strings.ReplaceAll(err.Error(), password, "xxxxx")
}

func randomPassword() (string, error) {
	buf := make([]byte, 18)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	return "pgpw" + hex.EncodeToString(buf), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
