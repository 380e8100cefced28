package xds

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/mccgate/mcc/fusion"
)

// maxFileSize bounds the fusion set file, as fusion does.
const maxFileSize = 8 << 20

// loadFusion loads the fusion set file and returns its gateway section.
//
// fusion keeps the section as File.Gateway, a *yaml.Node, but its strict
// decoder (KnownFields) decodes a *yaml.Node field as an ordinary struct
// and refuses every key of the section ("gateway.authz: unknown field").
// Until that is fixed there, the section is cut out here: its lines are
// blanked (so every line number fusion reports stays right) before fusion
// parses the rest, and the section is decoded from this package's own parse.
func loadFusion(path string) (*fusion.Config, *yaml.Node, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	data, err := readFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			msg = "file not found"
		case errors.As(err, &pe):
			msg = pe.Err.Error()
		}
		return nil, nil, &fusion.LoadError{Problems: []fusion.Problem{{File: path, Msg: msg}}}
	}
	rest, gw := splitGateway(data)
	fc, err := fusion.Parse(rest, path, filepath.Dir(abs))
	if err != nil {
		return nil, gw, err // the section is still decoded, for its problems
	}
	fc.Path = abs
	return fc, gw, nil
}

// splitGateway returns data with the top-level gateway section replaced by
// empty lines, and the section's node. Data that does not parse, or a
// flow-style document, is returned as is for fusion to report on.
func splitGateway(data []byte) ([]byte, *yaml.Node) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return data, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode || root.Style&yaml.FlowStyle != 0 {
		return data, nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "gateway" {
			continue
		}
		first := root.Content[i].Line
		last := -1 // to the end of the file
		if i+2 < len(root.Content) {
			last = root.Content[i+2].Line - 1
		}
		return blankLines(data, first, last), root.Content[i+1]
	}
	return data, nil
}

// blankLines empties lines first..last (1-based, inclusive; last -1 means
// to the end), keeping the line breaks.
func blankLines(data []byte, first, last int) []byte {
	lines := bytes.SplitAfter(data, []byte("\n"))
	var out bytes.Buffer
	for i, l := range lines {
		n := i + 1
		if n >= first && (last < 0 || n <= last) {
			if bytes.HasSuffix(l, []byte("\n")) {
				out.WriteByte('\n')
			}
			continue
		}
		out.Write(l)
	}
	return out.Bytes()
}

func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("file larger than %d bytes", maxFileSize)
	}
	return os.ReadFile(path)
}
