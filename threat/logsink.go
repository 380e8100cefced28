package threat

import (
	"context"
	"encoding/json"

	"go.uber.org/zap"
)

// logSink writes one structured zap line per event.
type logSink struct {
	l *zap.Logger
}

// NewLogSink returns a Sink that logs each event as one structured line at
// Warn level (blocked) or Info level (reported), with the event's keys as zap
// fields. Certificates appear by serial, fingerprint and names, never as PEM.
func NewLogSink(l *zap.Logger) Sink {
	if l == nil {
		l = zap.NewNop()
	}
	return &logSink{l: l}
}

func (s *logSink) Name() string { return "log" }

func (s *logSink) Deliver(_ context.Context, batch []*Event) error {
	for _, e := range batch {
		lvl := zap.InfoLevel
		if e.Action == ActionBlocked {
			lvl = zap.WarnLevel
		}
		ce := s.l.Check(lvl, "threat event")
		if ce == nil {
			continue
		}
		ce.Write(logFields(e)...)
	}
	return nil
}

func (s *logSink) Close() error {
	// Sync fails on terminals and pipes for reasons that do not matter
	// here; losing a log line at shutdown is not worth an error.
	_ = s.l.Sync()
	return nil
}

// logFields are the zap fields for e: everything the JSON event carries,
// with ReasonData redacted like MarshalJSON redacts it.
func logFields(e *Event) []zap.Field {
	f := make([]zap.Field, 0, 32)
	f = append(f,
		zap.String("schema", e.Schema),
		zap.String("id", e.ID),
		zap.Time("time", e.Time),
		zap.String("name", e.Name),
		zap.String("reasonCode", string(e.ReasonCode)),
	)
	if len(e.ReasonData) > 0 {
		// Encoded like the JSON event, so PEM is redacted the same way.
		f = append(f, zap.Any("reasonData", json.RawMessage(appendObject(nil, e.ReasonData))))
	}
	f = appendNonEmpty(f, "ref", e.Ref)
	f = append(f,
		zap.Int("currentThreatEventScore", e.CurrentThreatEventScore),
		zap.Int("threatEventsScore", e.ThreatEventsScore),
		zap.Bool("failSafeEnforce", e.FailSafeEnforce),
	)
	f = appendNonEmpty(f, "message", e.Message)
	f = appendNonEmpty(f, "externalID", e.ExternalID)
	f = appendNonEmpty(f, "fusedAppToken", e.FusedAppToken)
	f = appendNonEmpty(f, "buildDate", e.BuildDate)
	f = appendNonEmpty(f, "buildUser", e.BuildUser)
	f = appendNonEmpty(f, "buildHost", e.BuildHost)
	f = appendNonEmpty(f, "sdkVersion", e.SDKVersion)
	for _, k := range DeviceKeys {
		f = appendNonEmpty(f, k, e.Device[k])
	}
	f = append(f,
		zap.String("fusionSet", e.FusionSet),
		zap.String("mode", string(e.Mode)),
		zap.String("action", string(e.Action)),
		zap.String("gateway", e.Gateway),
	)
	f = appendNonEmpty(f, "node", e.Node)
	f = appendNonEmpty(f, "clientIP", e.ClientIP)
	f = appendNonEmpty(f, "sni", e.SNI)
	f = appendNonEmpty(f, "host", e.Host)
	f = appendNonEmpty(f, "method", e.Method)
	f = appendNonEmpty(f, "path", e.Path)
	if c := e.Certificate; c != nil {
		f = append(f, zap.Object("certificate", c))
	}
	return f
}

func appendNonEmpty(f []zap.Field, key, val string) []zap.Field {
	if val == "" {
		return f
	}
	return append(f, zap.String(key, val))
}
