package main

import (
	"context"
	"errors"
	"io"
)

// runRevoke is not written yet; its owner replaces this file.
func runRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
