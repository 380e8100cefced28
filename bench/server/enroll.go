package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/client"
)

func init() {
	register(benchmark{name: "enroll", what: "enrollments over mTLS (a new TLS handshake with the build certificate each, CSR check, the set's rules, limits counted, install certificate signed and stored), 8 concurrent clients", run: benchEnroll})
}

// enrollBenchSet accepts install certificates, with limits far above
// what the benchmark makes (they are counted, never reached).
const enrollBenchSet = certsBenchSet + `    installs:
      accept: [install]
      enrollment:
        max_per_build: 10000000
        max_per_address: 10000000
`

func benchEnroll(ctx context.Context, o options) error {
	s, err := startCertsServer(ctx, o)
	if err != nil {
		return err
	}
	defer s.Close()
	status, body, err := s.call(ctx, "PUT", "/v1/fusion-sets/bench-prod", s.admin, "application/yaml", []byte(enrollBenchSet))
	if err != nil || (status != http.StatusCreated && status != http.StatusOK) {
		return fmt.Errorf("publishing the benchmark set: %d %s %v", status, body, err)
	}
	status, body, err = s.call(ctx, "POST", "/v1/fusion-sets/bench-prod/builds", s.admin, "application/json",
		[]byte(`{"appId":"com.example.bench","buildId":"enroll-build"}`))
	if err != nil || status != http.StatusCreated {
		return fmt.Errorf("issuing the build: %d %s %v", status, body, err)
	}
	var build struct {
		Bundle struct {
			Data     []byte `json:"data"`
			Password string `json:"password"`
		} `json:"bundle"`
	}
	if err := json.Unmarshal(body, &build); err != nil {
		return err
	}
	key, leaf, _, err := pki.DecodeBundle(build.Bundle.Data, build.Bundle.Password)
	if err != nil {
		return err
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}

	enroll := httptest.NewUnstartedServer(s.srv.EnrollHandler())
	enroll.TLS = server.EnrollTLS(&tls.Config{})
	enroll.StartTLS()
	defer enroll.Close()
	roots := enroll.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	total, workers := 3000, 8
	if o.Quick {
		total = 60
	}
	// The devices' keys and CSRs are made before the clock starts: they
	// are the phones' work, not the server's.
	bodies := make([][]byte, total)
	for i := range bodies {
		_, csr, err := client.NewDeviceKey()
		if err != nil {
			return err
		}
		bodies[i] = fmt.Appendf(nil, `{"csr":%q,"installId":"bench-install-%d","device":{"deviceID":"device-%d"}}`,
			base64.StdEncoding.EncodeToString(csr), i, i)
	}
	// Every enrollment is a new install: a new connection, a full
	// handshake with the build certificate.
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	all, elapsed, err := runWorkers(total, workers, func(i int) error {
		req, err := http.NewRequestWithContext(ctx, "POST", enroll.URL+"/v1/fusion-sets/bench-prod/enroll", bytes.NewReader(bodies[i]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("enrolling: %d %s", resp.StatusCode, data)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("database         %s\n", certsDialect(o))
	fmt.Printf("cpus             %d (GOMAXPROCS %d); client and server share them\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("enrolled         %d installs in %s\n", len(all), elapsed.Round(time.Millisecond))
	fmt.Printf("rate             %.0f enrollments/s (budget >= 300/s)\n", float64(len(all))/elapsed.Seconds())
	certsLatency("latency", all)
	return nil
}
