package envoyext

import (
	"context"
	"runtime/debug"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recoverUnary turns a panic in a handler into an Internal error instead of
// a crashed process. Envoy treats an ext_authz error as a failure and, with
// failure_mode_allow off (what mcc xds configures), denies the request: a
// bug fails closed for one request, not open or for everyone.
func (s *Service) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in gRPC handler; answering with an error", zap.String("method", info.FullMethod),
				zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

// recoverStream is recoverUnary for the access-log stream.
func (s *Service) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in gRPC stream handler; closing the stream", zap.String("method", info.FullMethod),
				zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(srv, ss)
}
