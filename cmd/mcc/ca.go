package main

import (
	"context"
	"errors"
	"io"
)

// runCA is not written yet; its owner replaces this file.
func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
