// Package webhook is a threat.Sink that POSTs events to an HTTP receiver
// through a bounded on-disk spool, so that events survive the receiver being
// down for minutes and the gateway restarting.
//
// # Wire format
//
// Each POST carries one batch, oldest event first:
//
//	POST <url>
//	Content-Type: application/json
//	User-Agent: mcc-webhook/1 mcc/<mcc's module version>
//	<Options.Headers, e.g. Authorization: Bearer ...>
//
//	{"events":[<event>,<event>,...]}
//
// where each <event> is a threat event object (schema mcc.threat-event/v1,
// schema/threat-event.v1.json). Any 2xx accepts the batch. 400 and 422 reject
// it for good: the batch is counted in Stats.Rejected and skipped, since
// sending the same bytes again cannot succeed. Anything else (a connection
// error, a timeout, 429, 5xx, 401, ...) is retried with exponential backoff
// and jitter between Options.MinBackoff and Options.MaxBackoff, honouring a
// Retry-After header up to MaxBackoff.
//
// # Delivery guarantees
//
// At least once, in order per gateway: one sender goroutine delivers the
// spool front to back and moves on only when a batch is accepted. A batch
// whose response was lost is sent again, so receivers should drop events
// whose "id" they have already seen. Nothing is dropped while the spool has
// room; when it is full the oldest events are dropped, counted in
// Stats.Dropped and logged (rate-limited, never silently).
//
// Deliver only appends to the spool (one fsync per batch) and returns: the
// event pipeline never waits on the network. Close keeps delivering for up to
// Options.CloseTimeout and leaves the rest spooled; New on the same directory
// resumes where delivery stopped.
//
// # Spool layout
//
// Options.SpoolDir holds, all 0600:
//
//	00000000000000000001.seg   append-only segments: one event JSON per line,
//	00000000000000000002.seg   oldest first; a new one per start and when one
//	...                        reaches a sixteenth of SpoolMaxBytes (max 4 MiB)
//	cursor                     "<segment> <byte offset>\n": how far delivery got,
//	                           replaced atomically after each delivered batch
//
// Delivered segments are deleted. On start, a segment torn by a crash is cut
// back to its last full line, and a cursor that cannot be trusted means
// delivering its segment again (duplicates, never losses). One gateway
// process per directory.
package webhook
