package translate

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// marshalAny packs m with deterministic marshalling: map fields (such as
// ext_authz context_extensions) would otherwise be written in random order,
// and every rebuild would look like a change to delta xDS, which versions
// each resource by a hash of its bytes.
func marshalAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("packing %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

// packer packs messages into Any and keeps the first error, so that the
// builders read as plain struct literals.
type packer struct{ err error }

func (p *packer) any(m proto.Message) *anypb.Any {
	a, err := marshalAny(m)
	if err != nil && p.err == nil {
		p.err = err
	}
	return a
}
