package envoyext

import (
	"errors"
	"io"
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// StreamAccessLogs implements envoy.service.accesslog.v3.AccessLogService.
func (a accessLogServer) StreamAccessLogs(stream grpc.ClientStreamingServer[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse]) error {
	return a.s.streamAccessLogs(stream)
}

// streamAccessLogs reads one Envoy access-log stream until Envoy closes it.
// Envoy sends the identifier (node, log name) on the first message only.
//
// What one stream can cost is bounded: gRPC refuses a message larger than
// the server's MaxRecvMsgSize, the node and log name are cut to maxNameLen,
// and handshake failures pass a per-stream token bucket before they are
// routed, scored or logged; the rest are counted and dropped.
func (s *Service) streamAccessLogs(stream grpc.ClientStreamingServer[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse]) error {
	s.alsStreams.Add(1)
	defer s.alsStreams.Add(-1)
	st := &alsStream{bucket: newTokenBucket(s.limits.handshakeRate, s.limits.handshakeBurst, s.clock)}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			// Envoy went away or the server is stopping; Envoy reconnects.
			return err
		}
		if id := msg.GetIdentifier(); id != nil {
			st.node, st.logName = clip(id.GetNode().GetId(), maxNameLen), clip(id.GetLogName(), maxNameLen)
			s.log.Debug("access-log stream identified", zap.String("node", st.node), zap.String("log_name", st.logName))
		}
		switch entries := msg.GetLogEntries().(type) {
		case *accesslogv3.StreamAccessLogsMessage_TcpLogs:
			for _, e := range entries.TcpLogs.GetLogEntry() {
				s.metrics.accessLogTCP.Inc()
				s.handleTCPEntry(stream, st, e)
			}
		case *accesslogv3.StreamAccessLogsMessage_HttpLogs:
			// HTTP logs never see a failed handshake; they are counted so a
			// misconfigured log shows up on the dashboard.
			s.metrics.accessLogHTTP.Add(float64(len(entries.HttpLogs.GetLogEntry())))
		}
	}
}

// alsStream is the state of one access-log stream.
type alsStream struct {
	node, logName string
	bucket        *tokenBucket
	// dropping is true while failures are over the rate; the first drop of
	// a run is logged, the rest only counted.
	dropping bool
}

// handleTCPEntry scores one closed downstream connection if its handshake
// failed. Clean closes are only counted.
func (s *Service) handleTCPEntry(stream grpc.ServerStream, st *alsStream, e *accesslogdatav3.TCPAccessLogEntry) {
	common := e.GetCommonProperties()
	failure := common.GetDownstreamTransportFailureReason()
	if failure == "" {
		return
	}
	if !st.bucket.allow() {
		s.metrics.handshakeDropped.Inc()
		s.handshakeDropped.Add(1)
		if !st.dropping {
			st.dropping = true
			s.decisionLog.Warn("access-log stream over its handshake-failure rate; failures are counted, not scored",
				zap.String("node", st.node), zap.String("log_name", st.logName),
				zap.Float64("per_second", s.limits.handshakeRate), zap.Int("burst", s.limits.handshakeBurst))
		}
		return
	}
	st.dropping = false
	node, logName := st.node, st.logName
	setID, how := s.routeHandshake(common)
	if setID == "" {
		s.metrics.handshakeFailures.WithLabelValues(labelUnrouted).Inc()
		s.decisionLog.Warn("handshake failure not routed to a fusion set (set --handshake-fusion-set or SNI routes)",
			zap.String("node", node), zap.String("log_name", logName),
			zap.String("sni", clip(common.GetTlsProperties().GetTlsSniHostname(), maxStringLen)),
			zap.String("client_ip", clip(socketIP(common.GetDownstreamRemoteAddress()), maxStringLen)))
		return
	}

	clientIP := clip(socketIP(common.GetDownstreamRemoteAddress()), maxStringLen)
	if a, err := netip.ParseAddr(clientIP); err == nil && s.proxies.trusted(a) {
		// The connection came from a proxy we trust (a load balancer in
		// front of Envoy): the failure cannot be pinned on a client, and
		// scoring the proxy would ban the proxy.
		s.metrics.handshakeFailures.WithLabelValues(labelFromProxy).Inc()
		s.decisionLog.Info("handshake failure from a trusted proxy not scored", zap.String("proxy", clientIP), zap.String("fusion_set", clip(setID, maxNameLen)))
		return
	}

	data := map[string]any{"failureReason": clip(failure, maxFailureLen), "routedBy": how}
	if c := handshakeCause(failure); c != "" {
		data["cause"] = string(c)
	}
	for k, a := range map[string]*corev3.Address{
		"downstreamRemoteAddress": common.GetDownstreamRemoteAddress(),
		"downstreamLocalAddress":  common.GetDownstreamLocalAddress(),
		"upstreamRemoteAddress":   common.GetUpstreamRemoteAddress(),
		"upstreamLocalAddress":    common.GetUpstreamLocalAddress(),
	} {
		if v := socketAddr(a); v != "" {
			data[k] = clip(v, maxStringLen)
		}
	}
	if logName != "" {
		data["logName"] = logName
	}
	if node != "" {
		data["envoyNode"] = node
	}
	if ja3 := common.GetTlsProperties().GetJa3Fingerprint(); ja3 != "" {
		data["ja3"] = clip(ja3, maxStringLen)
	}
	gwNode := s.node
	if gwNode == "" {
		gwNode = node
	}
	r := &fusion.Request{
		ClientIP:   clientIP,
		SNI:        clip(common.GetTlsProperties().GetTlsSniHostname(), maxStringLen),
		Gateway:    threat.GatewayEnvoy,
		Node:       gwNode,
		RequestID:  clip(common.GetStreamId(), maxStringLen),
		Reason:     threat.ReasonHandshakeFailed,
		ReasonData: data,
	}
	d := s.engine.Evaluate(stream.Context(), setID, r)
	label := setID
	if _, known := s.engine.Set(setID); !known {
		label = labelUnknownSet
	}
	s.metrics.handshakeFailures.WithLabelValues(label).Inc()
	fields := []zap.Field{
		zap.String("fusion_set", clip(setID, maxNameLen)), zap.String("reason", string(d.Reason)),
		zap.String("client_ip", r.ClientIP), zap.String("sni", r.SNI), zap.String("node", gwNode),
	}
	if d.Event != nil {
		fields = append(fields, zap.String("event_id", d.Event.ID), zap.Int("score", d.Event.ThreatEventsScore))
	}
	s.decisionLog.Info("handshake failure scored", fields...)
}
