package main

import (
	"context"
	"errors"
	"io"
)

// runValidate is not written yet; its owner replaces this file.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
