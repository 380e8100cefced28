package fusion

// ResetFileCache forgets every parsed file, for benchmarks of a first load.
func ResetFileCache() {
	parsedFiles.Lock()
	clear(parsedFiles.m)
	parsedFiles.Unlock()
}
