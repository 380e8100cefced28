package threat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

func TestLogSinkOneStructuredLinePerEvent(t *testing.T) {
	// The observer checks the fields; the JSON core checks what actually
	// reaches a log file.
	obs, logs := observer.New(zap.InfoLevel)
	var out bytes.Buffer
	jsonCore := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&out), zap.InfoLevel)
	s := threat.NewLogSink(zap.New(zapcore.NewTee(obs, jsonCore)))
	certPEM, keyPEM, info := newCert(t)

	blocked := threattest.Event(threat.ReasonCertRevoked)
	blocked.Certificate = info
	blocked.ReasonData = map[string]any{"peer": string(certPEM), "key": string(keyPEM), "serial": info.Serial}
	reported := threattest.Event(threat.ReasonNoClientCert)
	reported.Action = threat.ActionReported
	reported.Certificate = nil

	if err := s.Deliver(context.Background(), []*threat.Event{blocked, reported}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	entries := logs.AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("%d log entries, want 2", len(entries))
	}
	if entries[0].Level != zapcore.WarnLevel || entries[1].Level != zapcore.InfoLevel {
		t.Errorf("levels %v, %v: want warn for blocked, info for reported", entries[0].Level, entries[1].Level)
	}
	f := entries[0].ContextMap()
	if f["reasonCode"] != "CERT_REVOKED" || f["id"] != blocked.ID || f["deviceID"] != "sample-deviceID" ||
		f["fusionSet"] != "bank-prod" || f["threatEventsScore"] != int64(blocked.ThreatEventsScore) {
		t.Errorf("fields %v", f)
	}
	cert, ok := f["certificate"].(map[string]any)
	if !ok || cert["sha256"] != info.SHA256 || cert["serial"] != info.Serial {
		t.Errorf("certificate field %v", f["certificate"])
	}
	if _, ok := entries[1].ContextMap()["certificate"]; ok {
		t.Error("certificate field logged for an event without one")
	}

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("line is not one JSON object: %v\n%s", err, l)
		}
	}
	for _, bad := range []string{"PRIVATE KEY", "BEGIN CERTIFICATE", "-----BEGIN"} {
		if strings.Contains(out.String(), bad) {
			t.Errorf("log output contains %q:\n%s", bad, out.String())
		}
	}
	if !strings.Contains(lines[0], `"serial":"`+info.Serial+`"`) {
		t.Errorf("harmless reason data lost: %s", lines[0])
	}
}
