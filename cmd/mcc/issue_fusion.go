package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/setguard"
)

// setGuard ties an issuance to a fusion set file: the record states the
// set's protections, and a certificate the set would reject is never
// written (wrong CA, app, lifetime, blocked build...). The rules are
// pki/setguard's, which mcc server's builds use too.
type setGuard struct {
	protections *pki.Protections
	check       func(*pki.Issued) error
}

func loadSetGuard(ctx context.Context, path, setID, appID string) (*setGuard, error) {
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading fusion set file: %w", err)
	}
	g, err := setguard.New(cfg, setID, appID)
	if errors.Is(err, setguard.ErrNoSet) {
		return nil, fmt.Errorf("fusion set %q is not in %s (it has %v)", setID, path, cfg.IDs)
	}
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading fusion set file: %w", err)
	}
	p := g.Protections
	p.Source = path
	sum := sha256.Sum256(data)
	p.SourceSHA256 = hex.EncodeToString(sum[:])
	check := func(iss *pki.Issued) error {
		if err := g.Check(ctx, iss); err != nil {
			return fmt.Errorf("%w; nothing was written", err)
		}
		return nil
	}
	return &setGuard{protections: p, check: check}, nil
}
