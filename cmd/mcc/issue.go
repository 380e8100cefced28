package main

import (
	"context"
	"errors"
	"io"
)

// runIssue is not written yet; its owner replaces this file.
func runIssue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
