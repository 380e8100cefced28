// Package threat is mcc's threat-event core, shared by the Caddy and Envoy
// gateways through package fusion:
//
//   - Event, the mcc.threat-event/v1 object, with its reason codes and a fast
//     allocation-light encoder (MarshalJSON, AppendJSON). Its JSON Schema is
//     schema/threat-event.v1.json at the repository root; tests check events
//     against it with internal/schematest.
//   - Store, where fail-safe enforcement keeps scores and bans, and
//     MemoryStore, the embedded implementation: fixed windows per key,
//     atomic add-and-ban, a lock-free Banned when nobody is banned, bounded
//     size. Package redisstore is the shared one for fleets. Both also count
//     certificate uses for clone detection (CloneCounter, ClonePolicy) in the
//     ban check's call: bounded sketches here (clone_sketch.go), HyperLogLogs
//     in the same script there.
//   - Pipeline, the asynchronous dispatcher in front of the sinks (NewLogSink,
//     NewFileSink; webhook and Redis Streams live in their own packages):
//     one bounded queue and goroutine per sink, so a slow sink never slows a
//     request or another sink; what cannot be queued is dropped and counted.
package threat
