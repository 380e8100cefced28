package gateway

import "github.com/mccgate/mcc/internal/cfgerr"

// Problem is one thing wrong with the gateway section, located by file, line
// and field path ("gateway.listeners[0].port"), printed like the fusion set
// loader's problems: "FILE:LINE: FIELD: MSG".
type Problem = cfgerr.Problem

// Error lists every problem found in the section, one per line.
type Error = cfgerr.List
