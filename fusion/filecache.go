package fusion

import (
	"errors"
	"sync"

	"github.com/mccgate/mcc/internal/filewatch"
)

// Files referenced by fusion sets (CA bundles, revocation lists, CRLs) are
// read once per load and parsed once per content. A load (LoadFile, Parse,
// CompileSet, a revocation reload) reads each path once, however many sets
// name it; what the bytes parse into is kept by path and SHA-256, so 1,000
// sets sharing a CA, a revocation list and a CRL cost one read and one parse
// of each, and a reload whose files did not change parses none of them.
// Parsed values are shared between sets and never modified.

// loadFiles is one load's reads.
type loadFiles struct {
	// inline is set for ParseInline: the document came from someone else
	// (the server's API), so no file it names is read and no placeholder
	// is expanded. The compiler refuses every file reference as a problem
	// at its field; read refuses too, so that a reference the compiler
	// missed fails instead of reading the disk.
	inline bool
	mu     sync.Mutex
	reads  map[string]fileRead
}

// fileRead is one file as a load read it.
type fileRead struct {
	data []byte
	sum  filewatch.Sum // the content as the watcher compares it, hashed once
	err  error
}

func newLoadFiles() *loadFiles { return &loadFiles{reads: map[string]fileRead{}} }

// newInlineLoad is a load that reads nothing from disk (see inline).
func newInlineLoad() *loadFiles { return &loadFiles{inline: true, reads: map[string]fileRead{}} }

// errInlineRead is what read returns in an inline load.
var errInlineRead = errors.New("no file is read for a document parsed inline")

// Messages of the problems an inline load reports.
const (
	inlineFileRefused   = "file references are refused in a document parsed inline (nothing on disk is read): "
	inlineSecretRefused = "{env.NAME} and {file.PATH} placeholders are refused in a document parsed inline: " +
		"neither the environment nor a file of the process parsing it is read"
)

// expand expands v's placeholders (ExpandSecret); an inline load refuses
// them instead.
func (l *loadFiles) expand(v, baseDir string) (string, error) {
	if !l.inline {
		return ExpandSecret(v, baseDir)
	}
	if rePlaceholder.MatchString(v) {
		return "", errors.New(inlineSecretRefused)
	}
	return v, nil
}

// read returns path's content, reading it on the first call of this load
// (bounded by limit; the first caller's limit applies to the load).
func (l *loadFiles) read(path string, limit int64) fileRead {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.reads[path]; ok {
		return r
	}
	if l.inline {
		return fileRead{err: errInlineRead}
	}
	data, err := readLimited(path, limit)
	r := fileRead{data: data, err: err}
	if err == nil {
		r.sum = filewatch.SumBytes(data)
	}
	l.reads[path] = r
	return r
}

// sums are the contents this load read, as internal/filewatch compares
// them (a file that could not be read is absent).
func (l *loadFiles) sums() map[string]filewatch.Sum {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]filewatch.Sum, len(l.reads))
	for p, r := range l.reads {
		if r.err == nil {
			out[p] = r.sum
		}
	}
	return out
}

// parsedKey names what a file was parsed as: the same file may be read as
// a CA bundle by one set and, mistakenly, as a CRL by another.
type parsedKey struct {
	path, kind string
}

type parsedFile struct {
	sum   filewatch.Sum
	value any
	err   error
}

// parsedFiles keeps, per path and kind, the parse of its latest content
// only: older contents are dropped as soon as a newer one is parsed, so the
// cache holds one value per referenced file.
var parsedFiles = struct {
	sync.Mutex
	m map[parsedKey]*parsedFile
}{m: map[parsedKey]*parsedFile{}}

// parseFile returns parse's result for path's content in this load,
// computed once per content. A read error is returned as is.
func parseFile[T any](l *loadFiles, path string, limit int64, kind string, parse func(path string, data []byte) (T, error)) (T, error) {
	var zero T
	r := l.read(path, limit)
	if r.err != nil {
		return zero, r.err
	}
	k := parsedKey{path, kind}
	parsedFiles.Lock()
	pf := parsedFiles.m[k]
	parsedFiles.Unlock()
	if pf == nil || pf.sum != r.sum {
		v, err := parse(path, r.data)
		pf = &parsedFile{sum: r.sum, value: v, err: err}
		parsedFiles.Lock()
		parsedFiles.m[k] = pf
		parsedFiles.Unlock()
	}
	if pf.err != nil {
		return zero, pf.err
	}
	return pf.value.(T), nil
}
