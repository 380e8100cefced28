package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mccgate/mcc/internal/safetext"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

// Limits of the events routes beyond the schema: what one batch and one
// event may hold, so that a token with events:write cannot make the
// server store (or index) arbitrary amounts of data in one request.
const (
	maxEventsPerBatch = 1000
	maxEventBytes     = 64 << 10 // a gateway's event is about 1 KiB
	maxIndexedBytes   = 256      // fusion set, client address, device id, ...: indexed columns
)

func (a *API) routesEvents() {
	a.route("POST", "/v1/events", auth.ScopeEventsWrite, a.ingestEvents)
	a.route("GET", "/v1/events", auth.ScopeRead, a.listEvents)
	a.route("GET", "/v1/events/{id}", auth.ScopeRead, a.getEvent)
}

// ingestRequest is what threat/webhook's sink POSTs.
type ingestRequest struct {
	Events []json.RawMessage `json:"events"`
}

// ingestResponse counts a batch: accepted events are new, duplicates were
// already stored (a sink re-sending after a lost response).
type ingestResponse struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// ingestEvents stores a batch of threat events, all or nothing: one bad
// event refuses the batch with its location (the webhook sink then drops
// the batch for good, since sending the same bytes again cannot succeed).
func (a *API) ingestEvents(w http.ResponseWriter, r *http.Request, caller *auth.Caller) error {
	var req ingestRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Events == nil {
		return invalidField("events", "required")
	}
	if len(req.Events) > maxEventsPerBatch {
		return invalidField("events", "at most "+strconv.Itoa(maxEventsPerBatch)+" events in one request")
	}
	shape, err := threatEventShape()
	if err != nil {
		return err
	}
	received := a.Now()
	rows := make([]store.Event, len(req.Events))
	var ps eventProblems
	for i, raw := range req.Events {
		rows[i] = eventRow(shape, raw, "events["+strconv.Itoa(i)+"]", received, &ps)
	}
	if len(ps.list) > 0 {
		return invalid("the batch holds invalid events; none was stored", ps.list...)
	}
	accepted, err := a.DB.InsertEventsFrom(r.Context(), rows, store.Sender{Agent: senderAgent(r.UserAgent()), Token: caller.Name()})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ingestResponse{Accepted: accepted, Duplicates: len(rows) - accepted})
}

// eventRow checks one event and makes its row: the indexed columns from
// the event's fields, the document as received (compacted). Problems are
// added to ps under path.
func eventRow(shape *eventShape, raw json.RawMessage, path string, received time.Time, ps *eventProblems) store.Event {
	before := len(ps.list)
	if len(raw) > maxEventBytes {
		ps.add(path, "an event may hold at most "+strconv.Itoa(maxEventBytes)+" bytes")
		return store.Event{}
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD in the
	// columns while the stored document kept the raw bytes.
	if !utf8.Valid(raw) {
		ps.add(path, "must be valid UTF-8")
		return store.Event{}
	}
	strs := make(map[string]string, 24)
	shape.check(raw, path, "", strs, ps)
	if len(ps.list) > before {
		return store.Event{}
	}
	t, _ := time.Parse(time.RFC3339Nano, strs["time"]) // checked as a date-time above
	if !storableTime(t) {
		ps.add(path+".time", "must be between 1970 and 2261")
	}
	buildID := strs["fusedAppToken"]
	if buildID == "" {
		buildID = strs["certificate.buildID"]
	}
	e := store.Event{
		ID:         strs["id"],
		Time:       t,
		Received:   received,
		FusionSet:  strs["fusionSet"],
		Reason:     strs["reasonCode"],
		Action:     strs["action"],
		ClientIP:   canonicalIP(strs["clientIP"]),
		DeviceID:   strs["deviceID"],
		Serial:     strings.ToLower(strs["certificate.serial"]),
		CertSHA256: strs["certificate.sha256"],
		ExternalID: strs["externalID"],
		BuildID:    buildID,
		AppID:      strs["certificate.appID"],
		Gateway:    strs["gateway"],
		Node:       strs["node"],
	}
	for _, c := range []struct{ field, v string }{
		{"fusionSet", e.FusionSet}, {"clientIP", e.ClientIP}, {"deviceID", e.DeviceID},
		{"certificate.serial", e.Serial}, {"externalID", e.ExternalID}, {"fusedAppToken", strs["fusedAppToken"]},
		{"certificate.buildID", strs["certificate.buildID"]}, {"certificate.appID", e.AppID}, {"node", e.Node},
	} {
		if detail := indexable(c.v); detail != "" {
			ps.add(path+"."+c.field, detail)
		}
	}
	// The node names a gateway on the console: no format characters
	// (bidi overrides, zero-width joiners) that would let one name pass
	// for another.
	if !safetext.Printable(e.Node) {
		ps.add(path+".node", "must be printable text")
	}
	doc, err := compactJSON(raw)
	if err != nil { // valid JSON: the body decoded
		ps.add(path, "must be JSON")
	}
	e.Doc = doc
	return e
}

// indexable says what is wrong with a value stored in an indexed column
// ("" when nothing): bounded length, no control characters (PostgreSQL
// refuses NUL in text, and an index entry has a size limit).
func indexable(v string) string {
	if len(v) > maxIndexedBytes {
		return "at most " + strconv.Itoa(maxIndexedBytes) + " bytes"
	}
	return plainText(v)
}

// plainText says what is wrong with v as text the database stores and
// indexes ("" when nothing): valid UTF-8 without control characters.
func plainText(v string) string {
	if !utf8.ValidString(v) {
		return "must be valid UTF-8"
	}
	for _, c := range v {
		if c < ' ' || c == 0x7f {
			return "must not hold control characters"
		}
	}
	return ""
}

// maxAgentBytes bounds the User-Agent kept for the gateways view.
const maxAgentBytes = 200

// senderAgent is the User-Agent as the gateways view shows it.
func senderAgent(ua string) string { return safetext.Clean(ua, maxAgentBytes) }

// storableTime reports whether t fits the database's unix nanoseconds.
func storableTime(t time.Time) bool {
	return t.Year() >= 1970 && t.Year() <= 2261
}

// canonicalIP writes an address one way (2001:db8::1, not 2001:0db8:0::1)
// so that the clientIP filter finds it however the gateway or the caller
// spelled it; anything that is not an address is kept as it is.
func canonicalIP(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

// eventCursor is a position in the newest-first listing.
type eventCursor struct {
	TimeNS int64  `json:"t"`
	ID     string `json:"i"`
}

// eventFilterParams are the query parameters that filter by equality, and
// where each goes.
var eventFilterParams = []struct {
	name string
	dst  func(q *store.EventQuery) *string
}{
	{"fusionSet", func(q *store.EventQuery) *string { return &q.FusionSet }},
	{"reason", func(q *store.EventQuery) *string { return &q.Reason }},
	{"clientIP", func(q *store.EventQuery) *string { return &q.ClientIP }},
	{"deviceId", func(q *store.EventQuery) *string { return &q.DeviceID }},
	{"serial", func(q *store.EventQuery) *string { return &q.Serial }},
	{"externalId", func(q *store.EventQuery) *string { return &q.ExternalID }},
}

// listEvents answers GET /v1/events: newest first, filtered, keyset pages.
func (a *API) listEvents(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	q, err := eventQuery(r.URL.Query())
	if err != nil {
		return err
	}
	events, next, err := a.DB.ListEvents(r.Context(), q)
	if err != nil {
		return err
	}
	out := page[json.RawMessage]{Items: make([]json.RawMessage, len(events))}
	for i := range events {
		out.Items[i] = withReceivedAt(events[i])
	}
	if next != nil {
		out.NextCursor = encodeCursor(eventCursor{TimeNS: next.TimeNS, ID: next.ID})
	}
	return writeJSON(w, http.StatusOK, out)
}

// eventQuery reads the listing's query parameters. A filter that cannot
// match anything as written (an unknown reason, a malformed address) is a
// 422 naming the parameter rather than an empty page.
func eventQuery(v url.Values) (store.EventQuery, error) {
	var q store.EventQuery
	if err := knownParams(v, "fusionSet", "reason", "from", "to", "clientIP", "deviceId", "serial", "externalId", "limit", "cursor"); err != nil {
		return q, err
	}
	for name, vals := range v {
		if len(vals) > 1 {
			return q, invalidField(name, "give it once")
		}
	}
	for _, p := range eventFilterParams {
		val := v.Get(p.name)
		if detail := indexable(val); detail != "" {
			return q, invalidField(p.name, detail)
		}
		*p.dst(&q) = val
	}
	if q.Reason != "" && !threat.Reason(q.Reason).Valid() {
		return q, invalidField("reason", "not a reason code (e.g. CERT_REVOKED)")
	}
	if q.ClientIP != "" {
		a, err := netip.ParseAddr(q.ClientIP)
		if err != nil {
			return q, invalidField("clientIP", "must be an IP address")
		}
		q.ClientIP = a.String()
	}
	if q.Serial != "" {
		if !hexSerial.MatchString(q.Serial) {
			return q, invalidField("serial", "must be the certificate serial in hex")
		}
		q.Serial = strings.ToLower(q.Serial)
	}
	var err error
	for _, tp := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if *tp.dst, err = queryTime(v, tp.name); err != nil {
			return q, err
		}
		if !tp.dst.IsZero() && !storableTime(*tp.dst) {
			return q, invalidField(tp.name, "must be between 1970 and 2261")
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, invalidField("to", "must be after from")
	}
	if q.Limit, err = queryLimit(v); err != nil {
		return q, err
	}
	var c eventCursor
	if err := decodeCursor(v.Get("cursor"), &c); err != nil {
		return q, err
	}
	if v.Get("cursor") != "" {
		if !eventID.MatchString(c.ID) {
			return q, &Problem{Name: "invalid-cursor", Status: http.StatusBadRequest, Detail: "cursor is not one this server issued"}
		}
		q.After = &store.EventKey{TimeNS: c.TimeNS, ID: c.ID}
	}
	return q, nil
}

var hexSerial = regexp.MustCompile(`^[0-9a-fA-F]{1,64}$`)

// eventID is the form of every event id (schema mcc.threat-event/v1).
var eventID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// getEvent answers GET /v1/events/{id}.
func (a *API) getEvent(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	id := r.PathValue("id")
	if !eventID.MatchString(id) {
		return notFound("no event " + strconv.Quote(id))
	}
	e, err := a.DB.GetEvent(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no event " + id)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, withReceivedAt(e))
}

// withReceivedAt is the stored document with "receivedAt" added as its
// last member. The document is a compact JSON object the ingest route
// checked, whose schema has no receivedAt, so appending is enough.
func withReceivedAt(e store.Event) json.RawMessage {
	doc := strings.TrimSuffix(e.Doc, "}")
	b := make([]byte, 0, len(doc)+48)
	b = append(b, doc...)
	b = append(b, `,"receivedAt":"`...)
	b = e.Received.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	return b
}
