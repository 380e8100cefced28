package fusion_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// FuzzLoad feeds arbitrary bytes to the loader: it must return a config or
// a *LoadError, never panic or hang. Seeds: testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	c := fusiontest.NewCorpus(f, "bank-prod", "com.example.bank")
	set, err := os.ReadFile(c.SetFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(set)
	f.Add([]byte(validSet))
	example, err := os.ReadFile(filepath.Join("..", "examples", "fusion-sets.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := fusion.Parse(data, "fuzz.yaml", c.Dir)
		if err == nil {
			if cfg == nil || len(cfg.IDs) == 0 || len(cfg.IDs) != len(cfg.Sets) {
				t.Fatalf("accepted an inconsistent config: %+v", cfg)
			}
			return
		}
		if le, ok := err.(*fusion.LoadError); !ok || len(le.Problems) == 0 {
			t.Fatalf("error %T %v is not a *LoadError with problems", err, err)
		}
	})
}

// FuzzEvaluate presents arbitrary DER as the leaf and as a chain
// certificate. The engine must decide without panicking (its recover path
// would log and return a decision without an event).
func FuzzEvaluate(f *testing.F) {
	c := fusiontest.NewCorpus(f, "bank-prod", "com.example.bank")
	core, logs := observer.New(zapcore.ErrorLevel)
	e := loadEngine(f, c.SetFile, fusion.Options{Logger: zap.New(core), CacheSize: 64})
	for _, tc := range c.Cases {
		var leaf, second []byte
		if len(tc.Chain) > 0 {
			leaf = tc.Chain[0]
		}
		if len(tc.Chain) > 1 {
			second = tc.Chain[1]
		}
		f.Add(leaf, second)
	}
	f.Add(c.CACert.Raw, c.CACert.Raw)
	f.Fuzz(func(t *testing.T, leaf, second []byte) {
		for _, chain := range [][][]byte{{leaf}, {leaf, second}, {second, leaf}} {
			d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: chain, ClientIP: "192.0.2.1"})
			if d.Reason != "" && d.Event == nil {
				t.Fatalf("decision without event (recovered panic?): %+v", d)
			}
			if d.Action == fusion.Allow && d.Reason == "" && d.Cert == nil {
				t.Fatalf("allowed without a parsed certificate: %+v", d)
			}
		}
		if n := logs.FilterMessageSnippet("panicked").Len(); n > 0 {
			t.Fatalf("evaluation panicked: %v", logs.All())
		}
	})
}
