//go:build !linux

package filewatch

// statKey is what the poll compares before hashing a file again.
type statKey struct{}

// statOf cannot read a change time portably here: the poll always hashes.
func statOf(string) (statKey, bool) { return statKey{}, false }
