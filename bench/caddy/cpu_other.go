//go:build !unix

package main

import "time"

// processCPU is not measured here; CPU ratios are then not reported.
func processCPU() time.Duration { return 0 }
