package main

import (
	"context"
	"errors"
	"io"
)

// runVersion is not written yet; its owner replaces this file.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
