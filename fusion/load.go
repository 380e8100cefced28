// Loading a fusion set file: one read, one YAML parse, for every reader.
//
//   - LoadFile(path) is what Caddy, `mcc authz` and `mcc ban` use: the
//     validated *Config, or a *LoadError listing every problem with file,
//     line and field. cfg.File.Gateway keeps the gateway section as a
//     *yaml.Node with the file's line numbers; readers that only route by
//     it (`mcc authz`) decode it from there.
//   - LoadFileWithGateway(path) is for the readers that judge the gateway
//     section (`mcc xds`, `mcc validate`): the same single load, plus a
//     *GatewaySection (node, declared set ids, file name and base
//     directory: what xds/gateway.Decode takes) returned even when the
//     fusion sets have problems, so both kinds of problem are reported in
//     one pass. Nobody reads the file a second time.
//   - Parse(data, filename, baseDir) is the same for bytes in memory.
//   - ParseInline(data, filename) is Parse for a document that came from
//     someone else (the server's API): every file reference is a problem
//     at its field, and nothing on disk is read.
//
// Every referenced file (CA bundles, revocation lists, CRLs) is read and
// parsed once per content: see filecache.go.
package fusion

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mccgate/mcc/internal/filewatch"
	"github.com/mccgate/mcc/threat/storeurl"
)

// maxFileSize bounds a fusion set file; real files are a few KiB.
const maxFileSize = 8 << 20

// Config is a loaded, validated fusion set file.
type Config struct {
	// Path is the absolute path of the file it came from ("" when inline).
	Path string
	// File is the raw model as decoded.
	File File
	// Sets are the compiled, immutable sets by id.
	Sets map[string]*Set
	// IDs are the set ids in file order.
	IDs []string

	// loaded is the content of the watched files as loaded, so that
	// Watch also sees changes made before it started.
	loaded map[string]filewatch.Sum
	// source is the file name as given (for problems); crlLines the line
	// of each revocation.crls entry, by field path.
	source   string
	crlLines map[string]int
	// secrets are the expanded placeholders (see secrets.go).
	secrets *configSecrets
}

// fileYAML is File as the strict decoder sees it. Its Gateway field is here
// only so that KnownFields accepts the `gateway` key (a yaml.Node by value:
// a *yaml.Node field would be decoded as an ordinary struct, refusing every
// key of the section); File.Gateway comes from the parsed tree instead, with
// the file's line numbers.
type fileYAML struct {
	Store      string       `yaml:"store,omitempty"`
	Sinks      []SinkConfig `yaml:"sinks,omitempty"`
	FusionSets []SetConfig  `yaml:"fusion_sets"`
	Gateway    yaml.Node    `yaml:"gateway,omitempty"`
}

// LoadFile reads and validates a fusion set file and every file it
// references (CA bundles, CRLs, revocation lists; paths relative to the
// file's directory). Problems are reported as a *LoadError.
func LoadFile(path string) (*Config, error) {
	cfg, _, err := LoadFileWithGateway(path)
	return cfg, err
}

// GatewaySection is a fusion set file's gateway section as the loader found
// it, with what xds/gateway.Decode needs to judge it.
type GatewaySection struct {
	// Node is the section (nil when the file has none), with the file's
	// line numbers.
	Node *yaml.Node
	// File names the file in problems; BaseDir resolves relative paths.
	File, BaseDir string
	// SetIDs are the fusion set ids the file declares, known even when
	// the sets have problems, so references from the section are checked
	// in the same pass.
	SetIDs []string
}

// HasSet reports whether the file declares fusion set id.
func (g *GatewaySection) HasSet(id string) bool {
	for _, s := range g.SetIDs {
		if s == id {
			return true
		}
	}
	return false
}

// LoadFileWithGateway is LoadFile that also returns the gateway section. The
// section is nil only when the file could not be read or is not YAML (the
// error says why); otherwise it is returned even with an error, so that the
// caller reports the section's problems alongside the fusion sets'.
func LoadFileWithGateway(path string) (*Config, *GatewaySection, error) {
	data, err := readLimited(path, maxFileSize)
	if err != nil {
		// The message names the file already.
		return nil, nil, &LoadError{Problems: []Problem{{Msg: err.Error()}}}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, &LoadError{Problems: []Problem{{File: path, Msg: err.Error()}}}
	}
	cfg, gw, err := parse(data, path, filepath.Dir(abs))
	if err != nil {
		return nil, gw, err
	}
	cfg.Path = abs
	// What was parsed is the baseline Watch compares against, so a write
	// made since is a change; a file the load did not read (a CRL of a
	// set without a usable CA) is taken as it is now.
	cfg.loaded[abs] = filewatch.SumBytes(data)
	for _, p := range cfg.WatchedFiles() {
		if _, ok := cfg.loaded[p]; !ok {
			cfg.loaded[p] = filewatch.SumFile(p)
		}
	}
	return cfg, gw, nil
}

// Parse validates a fusion set file held in memory. filename is used in
// problems; baseDir resolves relative paths. Every problem found is
// reported, as a *LoadError.
func Parse(data []byte, filename, baseDir string) (*Config, error) {
	cfg, _, err := parse(data, filename, baseDir)
	return cfg, err
}

// ParseInline validates a fusion set file held in memory without reading
// anything from disk or the environment: a file reference
// (trusted_ca.file, intermediates.file, revocation.files, revocation.crls,
// revocation.url_ca) or a {env.NAME}/{file.PATH} placeholder is a problem
// at its line and field. It is the loader for documents received over a
// network (the server's API), where a path would let the sender read the
// receiver's files. filename names the document in problems.
func ParseInline(data []byte, filename string) (*Config, error) {
	cfg, _, problems := parseProblems(data, filename, "", newInlineLoad())
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &LoadError{Problems: problems}
	}
	return cfg, nil
}

func parse(data []byte, filename, baseDir string) (*Config, *GatewaySection, error) {
	cfg, gw, problems := parseProblems(data, filename, baseDir, newLoadFiles())
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, gw, &LoadError{Problems: problems}
	}
	return cfg, gw, nil
}

// parseProblems is Parse, reading referenced files through files; the
// gateway section is nil when data is not a YAML mapping.
func parseProblems(data []byte, filename, baseDir string, files *loadFiles) (*Config, *GatewaySection, []Problem) {
	if len(data) > maxFileSize {
		return nil, nil, []Problem{{File: filename, Msg: fmt.Sprintf("file larger than %d bytes", maxFileSize)}}
	}
	// One parse: the tree gives the line numbers, and decodes the file
	// when it holds only known keys; otherwise the strict decoder below
	// parses again, for its messages.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, []Problem{syntaxProblem(filename, err, wrongLine(data))}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil, []Problem{{File: filename, Line: 1, Msg: "empty file: expected a mapping with fusion_sets"}}
	}
	if root := doc.Content[0]; root.Kind != yaml.MappingNode {
		return nil, nil, []Problem{{File: filename, Line: root.Line, Msg: "expected a mapping with fusion_sets at the top level"}}
	}
	ix := newNodeIndex(&doc)
	// The section comes from the parsed tree, so it is there even when
	// the strict decode below fails.
	gw := &GatewaySection{Node: valueOf(doc.Content[0], "gateway"), File: filename, BaseDir: baseDir}

	var fy fileYAML
	var problems []Problem
	if !knownFieldsOnly(doc.Content[0], reflect.TypeOf(fy), 0) || doc.Decode(&fy) != nil {
		fy = fileYAML{}
		strict := yaml.NewDecoder(bytes.NewReader(data))
		strict.KnownFields(true)
		if err := strict.Decode(&fy); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, gw, []Problem{syntaxProblem(filename, err, 0)}
			}
			problems = append(problems, ix.typeProblems(filename, te.Errors)...)
		}
	}
	// What the decoder let through leniently ("yes" for true) is refused
	// like its other type errors, once per field.
	reported := make(map[string]bool, len(problems))
	for _, p := range problems {
		reported[p.Field] = true
	}
	for _, p := range strictScalars(filename, doc.Content[0], reflect.TypeOf(fileYAML{})) {
		if !reported[p.Field] {
			problems = append(problems, p)
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		problems = append(problems, Problem{File: filename, Line: extra.Line, Msg: "more than one YAML document: put every set under one fusion_sets list"})
	} else if !errors.Is(err, io.EOF) {
		problems = append(problems, syntaxProblem(filename, err, 0))
	}
	f := File{Store: fy.Store, Sinks: fy.Sinks, FusionSets: fy.FusionSets, Gateway: gw.Node}
	for _, sc := range fy.FusionSets {
		if sc.ID != "" {
			gw.SetIDs = append(gw.SetIDs, sc.ID)
		}
	}
	typeErrored := make([]string, 0, len(problems))
	for _, p := range problems {
		if p.Field != "" {
			typeErrored = append(typeErrored, p.Field)
		}
	}

	var semantic []Problem
	// One store rule for every reader of a store setting (storeurl); its
	// messages never quote an expanded value, which may be the password.
	store, err := files.expand(f.Store, baseDir)
	if err == nil {
		_, _, err = storeurl.ParseExpanded(store, f.Store)
	}
	if err != nil {
		semantic = append(semantic, Problem{File: filename, Line: ix.valueLine("store"), Field: "store", Msg: err.Error()})
	}
	semantic = append(semantic, sinkProblems(f.Sinks, filename, baseDir, ix, files)...)
	if len(f.FusionSets) == 0 {
		semantic = append(semantic, Problem{File: filename, Line: ix.line("fusion_sets"), Field: "fusion_sets", Msg: "at least one fusion set is required"})
	}

	cfg := &Config{File: f, Sets: make(map[string]*Set, len(f.FusionSets)), source: filename, crlLines: make(map[string]int),
		secrets: &configSecrets{store: store}}
	firstLine := make(map[string]int)
	for i, sc := range f.FusionSets {
		prefix := "fusion_sets[" + strconv.Itoa(i) + "]"
		set, ps := compileSet(sc, baseDir, filename, prefix, ix, files)
		semantic = append(semantic, ps...)
		if sc.ID == "" {
			continue
		}
		if l, dup := firstLine[sc.ID]; dup {
			semantic = append(semantic, Problem{File: filename, Line: ix.valueLine(prefix + ".id"), Field: prefix + ".id",
				Msg: fmt.Sprintf("duplicate fusion set id %q (first defined at line %d)", sc.ID, l)})
			continue
		}
		firstLine[sc.ID] = ix.valueLine(prefix + ".id")
		if set != nil {
			cfg.Sets[sc.ID] = set
			cfg.IDs = append(cfg.IDs, sc.ID)
			for _, field := range set.revSrc.crlFields {
				cfg.crlLines[field] = ix.valueLine(field)
			}
		}
	}

	// A field whose type was wrong decodes as its zero value; its semantic
	// complaints ("mode is required") would only repeat the type error.
	for _, p := range semantic {
		if !underAny(p.Field, typeErrored) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return nil, gw, problems
	}
	cfg.loaded = files.sums()
	return cfg, gw, nil
}

// valueOf returns the value of key in mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// WatchedFiles returns the file itself and every CA, intermediate, CRL and
// revocation list file it references, as absolute paths, without repeats.
func (c *Config) WatchedFiles() []string {
	var out []string
	seen := make(map[string]bool)
	add := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	add(c.Path)
	for _, id := range c.IDs {
		for _, p := range c.Sets[id].files() {
			add(p)
		}
	}
	return out
}

func underAny(field string, roots []string) bool {
	for _, r := range roots {
		if field == r || strings.HasPrefix(field, r+".") || strings.HasPrefix(field, r+"[") {
			return true
		}
	}
	return false
}

var reYAMLLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a YAML parser error ("yaml: line 3: ...") into a
// Problem. The parser often names the line where the enclosing list or
// mapping starts; wrong, when known (not 0), is the line that breaks the
// document, and is used when it comes later.
func syntaxProblem(file string, err error, wrong int) Problem {
	msg := err.Error()
	if m := reYAMLLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if wrong > line {
			line = wrong
		}
		return Problem{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	p := Problem{File: file, Line: wrong, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	return p
}

// Files of at most wrongLineMaxLines lines and wrongLineMaxBytes bytes are
// searched line by line from the end; larger ones are bisected.
const (
	wrongLineMaxLines = 400
	wrongLineMaxBytes = 64 << 10
)

// wrongLine finds the line that makes data unparsable: the line after the
// longest prefix of whole lines that still parses. (A prefix ending inside
// an unclosed quote or bracket fails too, so the search looks for the last
// prefix that parses, not the first that fails.) It returns 0 when every
// prefix but the whole parses or data parses.
func wrongLine(data []byte) int {
	// ends[i] is the length of the first i+1 lines.
	var ends []int
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	parses := func(lines int) bool {
		if lines == 0 {
			return true
		}
		var n yaml.Node
		return yaml.Unmarshal(data[:ends[lines-1]], &n) == nil
	}
	total := len(ends)
	if parses(total) {
		return 0
	}
	if total <= wrongLineMaxLines && len(data) <= wrongLineMaxBytes {
		for k := total - 1; k >= 0; k-- {
			if parses(k) {
				return k + 1
			}
		}
		return 0
	}
	lo, hi := 0, total // parses(lo), !parses(hi)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if parses(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// readLimited reads a regular file, refusing one larger than limit. Errors
// name the file.
func readLimited(path string, limit int64) ([]byte, error) {
	// Only regular files: a FIFO or device (/dev/stdin) would block or
	// never end (OpenRegular does not block on opening one either).
	f, _, err := filewatch.OpenRegular(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("file not found: %s", path)
		}
		return nil, err // names the file
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file larger than %d bytes: %s", limit, path)
	}
	return data, nil
}

// NewConfig builds a Config from compiled sets (Caddy's inline fusion_set
// blocks), refusing duplicate ids. Its Path is empty: Watch reloads only the
// sets' revocation data.
func NewConfig(sets ...*Set) (*Config, error) {
	cfg := &Config{Sets: make(map[string]*Set, len(sets))}
	for _, s := range sets {
		if s == nil {
			return nil, errors.New("fusion: NewConfig: nil set")
		}
		if _, dup := cfg.Sets[s.ID]; dup {
			return nil, fmt.Errorf("fusion: duplicate fusion set id %q", s.ID)
		}
		cfg.Sets[s.ID] = s
		cfg.IDs = append(cfg.IDs, s.ID)
		cfg.File.FusionSets = append(cfg.File.FusionSets, s.Config)
	}
	cfg.loaded = filewatch.SumFiles(cfg.WatchedFiles())
	return cfg, nil
}
