package validate

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Walk calls visit for m and every message nested in it, including the
// contents of Any fields (unpacked), depth first. An Any that cannot be
// unpacked is an error (Message reports it with its path).
func Walk(m proto.Message, visit func(proto.Message)) error {
	return walkMessage(m.ProtoReflect(), visit, 0)
}

func walkMessage(m protoreflect.Message, visit func(proto.Message), depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("Any nested more than %d deep", maxDepth)
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			return fmt.Errorf("cannot unpack %s: %w", a.GetTypeUrl(), err)
		}
		return walkMessage(inner.ProtoReflect(), visit, depth+1)
	}
	visit(m.Interface())
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					err = walkMessage(mv.Message(), visit, depth)
					return err == nil
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
				l := v.List()
				for i := 0; i < l.Len() && err == nil; i++ {
					err = walkMessage(l.Get(i).Message(), visit, depth)
				}
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			err = walkMessage(v.Message(), visit, depth)
		}
		return err == nil
	})
	return err
}
