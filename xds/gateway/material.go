package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"go.yaml.in/yaml/v3"
)

// Loading key material is a step of its own, after Decode: `mcc xds` sends
// listener certificates and keys to Envoy and calls LoadMaterial; `mcc
// authz` only routes handshake failures by the section and never calls it,
// so it never reads a private key.

// materialNodes are where a listener's certificate block sits in the file,
// for LoadMaterial's problems.
type materialNodes struct {
	item, cert, key *yaml.Node
	path            string
}

// LoadMaterial reads the certificate and key of every listener with inline
// delivery (file delivery leaves them to Envoy) and checks that each pair
// matches, as Envoy will when it loads the SDS secret. Problems are a *Error
// with the lines of the section's keys.
func (g *Gateway) LoadMaterial() error {
	r := &reader{file: g.file}
	for _, l := range g.Listeners {
		m := l.material
		if m == nil || l.Delivery != DeliveryInline || l.CertFile == "" || l.KeyFile == "" {
			continue
		}
		var err error
		if l.CertPEM, err = readPEMFile(l.CertFile); err != nil {
			r.addf(m.cert, m.path+".cert_file", fileError(err))
		}
		if l.KeyPEM, err = readPEMFile(l.KeyFile); err != nil {
			r.addf(m.key, m.path+".key_file", fileError(err))
		}
		if l.CertPEM == nil || l.KeyPEM == nil {
			continue
		}
		if _, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM); err != nil {
			r.addf(m.cert, m.path, fmt.Sprintf("cert_file %s and key_file %s: %v", l.CertFile, l.KeyFile, err))
		}
	}
	if len(r.problems) > 0 {
		return &Error{Problems: r.problems}
	}
	return nil
}

// maxPEMFile bounds a certificate or key file: a chain is a few KiB.
const maxPEMFile = 1 << 20

// readPEMFile reads a regular file of at most maxPEMFile bytes, so that a
// path to a device or a FIFO cannot hang or exhaust the loader.
func readPEMFile(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO for reading blocks.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEMFile)
	}
	return data, nil
}

func fileError(err error) string {
	var pe *fs.PathError
	if errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe) {
		return "file not found: " + pe.Path
	}
	return err.Error()
}
