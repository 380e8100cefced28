package pki

import "testing"

func BenchmarkIssue(b *testing.B) {
	ca, err := InitCA(b.TempDir()+"/ca", CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ca.Issue(testRequest()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBundleModern2023(b *testing.B) {
	ca, err := InitCA(b.TempDir()+"/ca", CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := ca.Issue(testRequest())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := EncodeBundle(iss, FormatModern2023); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRecord(b *testing.B) {
	ca, err := InitCA(b.TempDir()+"/ca", CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	iss, _ := ca.Issue(testRequest())
	bundle, _ := EncodeBundle(iss, FormatModern2023)
	rec, err := ca.NewRecord(RecordInput{Issued: iss, Bundle: bundle, BundleFile: "app.p12"})
	if err != nil {
		b.Fatal(err)
	}
	data, _ := rec.Encode()
	for b.Loop() {
		if _, err := VerifyRecord(data, ca.Cert, nil); err != nil {
			b.Fatal(err)
		}
	}
}
