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
func (s *Service) streamAccessLogs(stream grpc.ClientStreamingServer[accesslogv3.StreamAccessLogsMessage, accesslogv3.StreamAccessLogsResponse]) error {
	var node, logName string
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
			node, logName = id.GetNode().GetId(), id.GetLogName()
			s.log.Debug("access-log stream identified", zap.String("node", node), zap.String("log_name", logName))
		}
		switch entries := msg.GetLogEntries().(type) {
		case *accesslogv3.StreamAccessLogsMessage_TcpLogs:
			for _, e := range entries.TcpLogs.GetLogEntry() {
				s.metrics.accessLogTCP.Inc()
				s.handleTCPEntry(stream, node, logName, e)
			}
		case *accesslogv3.StreamAccessLogsMessage_HttpLogs:
			// HTTP logs never see a failed handshake; they are counted so a
			// misconfigured log shows up on the dashboard.
			s.metrics.accessLogHTTP.Add(float64(len(entries.HttpLogs.GetLogEntry())))
		}
	}
}

// handleTCPEntry scores one closed downstream connection if its handshake
// failed. Clean closes are only counted.
func (s *Service) handleTCPEntry(stream grpc.ServerStream, node, logName string, e *accesslogdatav3.TCPAccessLogEntry) {
	common := e.GetCommonProperties()
	failure := common.GetDownstreamTransportFailureReason()
	if failure == "" {
		return
	}
	setID, how := s.routeHandshake(common)
	if setID == "" {
		s.metrics.handshakeFailures.WithLabelValues(labelUnrouted).Inc()
		s.decisionLog.Warn("handshake failure not routed to a fusion set (set --handshake-fusion-set or SNI routes)",
			zap.String("node", node), zap.String("log_name", logName),
			zap.String("sni", common.GetTlsProperties().GetTlsSniHostname()),
			zap.String("client_ip", socketIP(common.GetDownstreamRemoteAddress())))
		return
	}

	clientIP := socketIP(common.GetDownstreamRemoteAddress())
	if a, err := netip.ParseAddr(clientIP); err == nil && s.proxies.trusted(a) {
		// The connection came from a proxy we trust (a load balancer in
		// front of Envoy): the failure cannot be pinned on a client, and
		// scoring the proxy would ban the proxy.
		s.metrics.handshakeFailures.WithLabelValues(labelFromProxy).Inc()
		s.decisionLog.Info("handshake failure from a trusted proxy not scored", zap.String("proxy", clientIP), zap.String("fusion_set", setID))
		return
	}

	data := map[string]any{"failureReason": truncate(failure, 512), "routedBy": how}
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
			data[k] = v
		}
	}
	if logName != "" {
		data["logName"] = logName
	}
	if node != "" {
		data["envoyNode"] = node
	}
	if ja3 := common.GetTlsProperties().GetJa3Fingerprint(); ja3 != "" {
		data["ja3"] = ja3
	}
	gwNode := s.node
	if gwNode == "" {
		gwNode = node
	}
	r := &fusion.Request{
		ClientIP:   clientIP,
		SNI:        common.GetTlsProperties().GetTlsSniHostname(),
		Gateway:    threat.GatewayEnvoy,
		Node:       gwNode,
		RequestID:  common.GetStreamId(),
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
		zap.String("fusion_set", setID), zap.String("reason", string(d.Reason)),
		zap.String("client_ip", r.ClientIP), zap.String("sni", r.SNI), zap.String("node", gwNode),
	}
	if d.Event != nil {
		fields = append(fields, zap.String("event_id", d.Event.ID), zap.Int("score", d.Event.ThreatEventsScore))
	}
	s.decisionLog.Info("handshake failure scored", fields...)
}
