package main

import (
	"context"
	"errors"
	"io"
)

// runXDS is not written yet; its owner replaces this file.
func runXDS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
