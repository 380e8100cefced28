package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strings"
)

// decodeJSON reads r's body into dst strictly: JSON only, one value, no
// unknown fields, right types. Its problems name the field.
func decodeJSON(r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &Problem{Name: "unsupported-media-type", Status: http.StatusUnsupportedMediaType, Detail: "send application/json"}
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	return decodeJSONBytes(body, dst)
}

// decodeJSONBytes is decodeJSON's strict decoding of a body already read.
func decodeJSONBytes(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "the request body is empty"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if p := locateMismatch(body, dst, err); p != nil {
			return p
		}
		return jsonProblem(err)
	}
	if dec.More() {
		return &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "the body holds more than one JSON value"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "trailing data after the JSON value"}
	}
	return nil
}

// bodyError turns a body read failure into its problem.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Problem{Name: "body-too-large", Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("the request body is over the limit of %d bytes", mbe.Limit)}
	}
	return &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "reading the request body failed"}
}

// jsonProblem maps encoding/json's errors to problems that name the field.
func jsonProblem(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return bodyError(err)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		return invalidField(field, fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value))
	case errors.As(err, &se):
		return &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: fmt.Sprintf("not JSON: %v (offset %d)", se, se.Offset)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "the JSON value is cut short"}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return invalidField(f, "unknown field")
	}
	return &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "not valid JSON: " + err.Error()}
}

// locateMismatch names the JSON path of a body that is JSON but does not
// fit dst (an unknown member or a value of the wrong kind), which
// encoding/json does not give: its unknown-field error has no path and its
// type errors no array index. It returns nil for any other error, or when
// it finds nothing (the caller then uses jsonProblem).
func locateMismatch(body []byte, dst any, err error) *Problem {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) && !strings.HasPrefix(err.Error(), "json: unknown field ") {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	path, detail := mismatch(v, reflect.TypeOf(dst), "")
	if detail == "" {
		return nil
	}
	if path == "" {
		path = "(body)"
	}
	return invalidField(path, detail)
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// mismatch walks the decoded value v along type t and returns the path and
// what is wrong at the first place v does not fit, in a stable order
// (object members sorted by name); detail is "" when v fits.
func mismatch(v any, t reflect.Type, path string) (string, string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil || t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		// null fits anything; a type that decodes itself (time.Time,
		// json.RawMessage) reports its own errors.
		return "", ""
	}
	wrong := func() (string, string) {
		return path, "must be " + jsonKind(t.Kind().String()) + ", not " + jsonValueKind(v)
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return wrong()
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(obj) {
			ft, ok := fields[strings.ToLower(k)]
			if !ok {
				return joinPath(path, k), "unknown field"
			}
			if p, d := mismatch(obj[k], ft, joinPath(path, k)); d != "" {
				return p, d
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return wrong()
		}
		for _, k := range sortedKeys(obj) {
			if p, d := mismatch(obj[k], t.Elem(), joinPath(path, k)); d != "" {
				return p, d
			}
		}
	case reflect.Slice, reflect.Array:
		if _, ok := v.(string); ok && t.Elem().Kind() == reflect.Uint8 {
			// []byte takes base64; encoding/json reports a bad one itself.
			return "", ""
		}
		arr, ok := v.([]any)
		if !ok {
			return wrong()
		}
		for i, e := range arr {
			if p, d := mismatch(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return p, d
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return wrong()
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return wrong()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return wrong()
		}
		if fits := reflect.New(t).Interface(); json.Unmarshal([]byte(n), fits) != nil {
			return path, "must be a whole number in range, not " + string(n)
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			return wrong()
		}
	}
	return "", ""
}

// jsonFields maps the lower-cased JSON member names of struct t (embedded
// structs included) to their types; encoding/json matches names without
// regard to case.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[strings.ToLower(name)] = f.Type
	}
	return out
}

func jsonValueKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "true or false"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "null"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func jsonKind(k string) string {
	switch k {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return k
}
