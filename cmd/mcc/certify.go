package main

import (
	"context"
	"errors"
	"io"
)

// runCertify is not written yet; its owner replaces this file.
func runCertify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
