package main

import (
	"context"
	"errors"
	"io"
)

// runAuthz is not written yet; its owner replaces this file.
func runAuthz(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
