package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Defaults for Options.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultBatchSize     = 256
	DefaultSpoolMaxBytes = 64 << 20
	DefaultMinBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultCloseTimeout  = 5 * time.Second
)

// maxSegmentBytes caps one spool segment; smaller spools use a sixteenth of
// their size, so that making room drops at most that share of the events.
const maxSegmentBytes = 4 << 20

// Options configures a Sink.
type Options struct {
	// URL receives the POSTs (http or https).
	URL string
	// Headers are added to every POST, e.g. "Authorization": "Bearer ...".
	// They are never logged.
	Headers map[string]string
	// Timeout bounds one POST, response included (default 10 s).
	Timeout time.Duration
	// BatchSize is the most events in one POST (default 256).
	BatchSize int
	// SpoolDir holds the spool (required; created 0700 if missing). One
	// gateway process per directory.
	SpoolDir string
	// SpoolMaxBytes bounds the spool on disk (default 64 MiB). When an
	// append would pass it, the oldest events are dropped and counted.
	SpoolMaxBytes int64
	// MinBackoff and MaxBackoff bound the wait between failed POSTs: it
	// doubles from MinBackoff up to MaxBackoff, with jitter (defaults 250 ms
	// and 30 s). A Retry-After from the receiver is honoured up to MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// CloseTimeout is how long Close keeps delivering before it leaves the
	// rest spooled for the next start (default 5 s).
	CloseTimeout time.Duration
	// Logger receives failures and drops, a line per change of state rather
	// than per event (zap.NewNop when nil).
	Logger *zap.Logger
}

// Check reports whether the URL and headers can be used, without opening
// anything: the rule configuration loaders apply before they start a sink.
// Its errors never contain a header value or the URL's query or password.
func (o Options) Check() error {
	u, err := url.Parse(o.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a token
		}
		return fmt.Errorf("webhook sink: invalid URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("webhook sink: URL must be http:// or https:// with a host")
	}
	for name, value := range o.Headers {
		if err := checkHeader(name, value); err != nil {
			return fmt.Errorf("webhook sink: %w", err)
		}
	}
	return nil
}

// reservedHeaders are set by the sink or by HTTP itself: a configured value
// would corrupt the request's framing or its declared body.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Type": true, "Content-Length": true, "Content-Encoding": true,
	"Transfer-Encoding": true, "Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Upgrade": true, "Proxy-Connection": true, "Expect": true,
}

// checkHeader refuses a header name that is not an HTTP token, a reserved
// header, and a value with control characters (CR or LF would start another
// header). The value is never quoted back.
func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("header with an empty name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("header name %q is not an HTTP token", name)
		}
	}
	if reservedHeaders[http.CanonicalHeaderKey(name)] {
		return fmt.Errorf("header %s is set by the sink or by HTTP and cannot be configured", name)
	}
	if value == "" {
		return fmt.Errorf("header %s has an empty value", name)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("header %s: value holds a control character", name)
		}
	}
	return nil
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (o Options) withDefaults() (Options, error) {
	if err := o.Check(); err != nil {
		return o, err
	}
	if o.SpoolDir == "" {
		return o, errors.New("webhook sink: no spool directory")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o, nil
}

func (o Options) segmentBytes() int64 {
	return min(max(o.SpoolMaxBytes/16, 1), maxSegmentBytes)
}
