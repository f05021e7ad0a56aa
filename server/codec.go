package server

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Answers to a request that could not be decoded as sent.
const (
	msgBadUTF8     = "the request holds a string that is not valid UTF-8"
	msgUndecodable = "the request is not a valid protobuf message of its type"
)

// badMarker is the unknown field lenientCodec appends to a request it
// could not decode as sent; its value says why (markUTF8 or markWire). The
// number is the largest protobuf allows, which no jeton message will ever
// use; a client that sends it itself is refused the same way, which is
// harmless.
const badMarker protowire.Number = protowire.MaxValidNumber

const (
	markUTF8 = 1
	markWire = 2
)

// lenientCodec is gRPC's proto codec, except that a request it cannot
// decode is the caller's fault, INVALID_ARGUMENT, not INTERNAL. grpc-go
// turns every codec error into INTERNAL and writes that status itself
// before any interceptor or handler runs, so the codec instead succeeds
// and marks the message, and refuseUndecodable, the first interceptor
// that sees it, refuses it:
//
//   - a request whose string fields hold invalid UTF-8 is decoded with
//     each bad string made valid, so that the audit of a refused reveal
//     can still name its purpose; protobuf-go has no option to decode a
//     proto3 string without checking it, so the repair walks the wire
//     format by hand (protowire and the message descriptor);
//   - any other undecodable request is left empty.
type lenientCodec struct{ encoding.CodecV2 }

func newLenientCodec() lenientCodec {
	return lenientCodec{encoding.GetCodecV2(protoenc.Name)}
}

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	why := uint64(markWire)
	fixed, changed, ferr := validUTF8(m.ProtoReflect().Descriptor(), data.Materialize(), 0)
	if ferr == nil && changed && proto.Unmarshal(fixed, m) == nil {
		why = markUTF8
	} else {
		proto.Reset(m)
	}
	r := m.ProtoReflect()
	r.SetUnknown(append(r.GetUnknown(), protowire.AppendVarint(protowire.AppendTag(nil, badMarker, protowire.VarintType), why)...))
	return nil
}

// maxDepth bounds the nesting validUTF8 follows; protobuf-go's own limit.
const maxDepth = 10000

var errWire = errors.New("server: malformed protobuf")

// validUTF8 returns b with every string field of md (nested messages and
// map entries included) made valid UTF-8, and whether any had to be.
func validUTF8(md protoreflect.MessageDescriptor, b []byte, depth int) ([]byte, bool, error) {
	if depth > maxDepth {
		return nil, false, errWire
	}
	out := make([]byte, 0, len(b))
	changed := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, errWire
		}
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return nil, false, errWire
			}
			out, b = append(out, b[:n+m]...), b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, false, errWire
		}
		b = b[n+m:]
		switch fd := md.Fields().ByNumber(num); {
		case fd == nil:
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			v, changed = []byte(strings.ToValidUTF8(string(v), "\uFFFD")), true
		case fd.Kind() == protoreflect.MessageKind:
			fixed, ch, err := validUTF8(fd.Message(), v, depth+1)
			if err != nil {
				return nil, false, err
			}
			v, changed = fixed, changed || ch
		}
		out = protowire.AppendBytes(protowire.AppendTag(out, num, typ), v)
	}
	return out, changed, nil
}

// undecodable returns the refusal of a message lenientCodec marked, or
// nil.
func undecodable(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	u := pm.ProtoReflect().GetUnknown()
	for len(u) > 0 {
		num, typ, n := protowire.ConsumeTag(u)
		if n < 0 {
			return nil
		}
		if num == badMarker && typ == protowire.VarintType {
			if why, _ := protowire.ConsumeVarint(u[n:]); why == markUTF8 {
				return status.Error(codes.InvalidArgument, msgBadUTF8)
			}
			return status.Error(codes.InvalidArgument, msgUndecodable)
		}
		m := protowire.ConsumeFieldValue(num, typ, u[n:])
		if m < 0 {
			return nil
		}
		u = u[n+m:]
	}
	return nil
}

// refuseUndecodable refuses a unary request lenientCodec marked.
func refuseUndecodable(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := undecodable(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// refuseUndecodableStream refuses each streamed message lenientCodec
// marked.
func refuseUndecodableStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, decodedStream{ss})
}

type decodedStream struct{ grpc.ServerStream }

func (s decodedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return undecodable(m)
}
