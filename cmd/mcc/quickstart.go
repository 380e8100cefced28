package main

import (
	"context"
	"errors"
	"io"
)

// runQuickstart is not written yet; its owner replaces this file.
func runQuickstart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
