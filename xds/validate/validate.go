// Package validate checks Envoy resources the way Envoy would before they
// leave the control plane: the protoc-gen-validate rules of every message,
// including the messages packed in google.protobuf.Any fields.
//
// The generated ValidateAll methods stop at Any: a Listener whose filter
// chain carries an invalid DownstreamTlsContext in transport_socket
// .typed_config passes Listener.ValidateAll. Almost every interesting part of
// an Envoy config (TLS contexts, HTTP connection managers, filters, access
// loggers, per-route filter configs) lives behind an Any, so this package
// walks the message with protoreflect, unpacks each Any and validates what
// is inside, recursively.
package validate

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// maxDepth bounds Any nesting (Envoy configs nest three or four deep).
const maxDepth = 32

// validatorAll is implemented by every message generated with
// protoc-gen-validate (all Envoy API messages).
type validatorAll interface{ ValidateAll() error }

// Message validates m and everything nested in it, Any contents included.
// Types packed in an Any must be linked into the binary (imported), or the
// Any is reported as unresolvable: Envoy would refuse an unknown type too.
// The error lists every problem, each prefixed with the field path.
func Message(m proto.Message) error {
	w := &walker{}
	w.message(m, "", 0)
	return errors.Join(w.errs...)
}

type walker struct {
	errs []error
}

func (w *walker) fail(path string, err error) {
	if path == "" {
		w.errs = append(w.errs, err)
		return
	}
	w.errs = append(w.errs, fmt.Errorf("%s: %w", path, err))
}

// message runs m's own rules (which cover its plain sub-messages) and then
// searches it for Any fields.
func (w *walker) message(m proto.Message, path string, depth int) {
	if depth > maxDepth {
		w.fail(path, fmt.Errorf("Any nested more than %d deep", maxDepth))
		return
	}
	if v, ok := m.(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			w.fail(path, err)
		}
	}
	w.findAny(m.ProtoReflect(), path, depth)
}

// findAny visits every populated message field of m (singular, repeated and
// map values) and validates the contents of the Any messages it finds.
func (w *walker) findAny(m protoreflect.Message, path string, depth int) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		w.any(a, path, depth)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := join(path, string(fd.Name()))
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				w.findAny(mv.Message(), p+"["+strconv.Quote(k.String())+"]", depth)
				return true
			})
		case fd.IsList():
			if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
				return true
			}
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.findAny(l.Get(i).Message(), p+"["+strconv.Itoa(i)+"]", depth)
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			w.findAny(v.Message(), p, depth)
		}
		return true
	})
}

func (w *walker) any(a *anypb.Any, path string, depth int) {
	inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
	if err != nil {
		w.fail(path, fmt.Errorf("cannot unpack %s: %w", a.GetTypeUrl(), err))
		return
	}
	w.message(inner, path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")", depth+1)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
