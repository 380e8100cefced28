package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Live feed bounds: a poll reads at most feedPage events; a quiet stream
// sends a comment every feedHeartbeat so proxies keep it open.
const (
	feedPage      = 500
	feedHeartbeat = 15 * time.Second
	// feedWriteTimeout bounds one write to a client that stopped reading.
	feedWriteTimeout = 30 * time.Second
	// feedSessionCheck is how often an open feed checks its session.
	feedSessionCheck = 10 * time.Second
)

// feedEvent is what the live feed sends for an event.
type feedEvent struct {
	Seq        int64  `json:"seq"`
	ID         string `json:"id"`
	Time       string `json:"time"`
	FusionSet  string `json:"fusionSet"`
	Reason     string `json:"reason"`
	Action     string `json:"action"`
	ClientIP   string `json:"clientIP"`
	DeviceID   string `json:"deviceID"`
	ExternalID string `json:"externalID"`
	Score      int64  `json:"score"`
}

// parseSeq reads a feed position: a decimal number ≥ 0.
func parseSeq(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// stream is the live feed, Server-Sent Events. Each event's SSE id is its
// sequence number (events.seq, given in commit order), so a browser that
// reconnects sends Last-Event-ID and gets everything after it: no event
// is lost across a reconnect. Without Last-Event-ID the feed starts after
// the `after` parameter (the number the page was rendered at), or at the
// newest event.
func (c *Console) stream(w http.ResponseWriter, r *http.Request, _ *session) {
	f, ok := parseFilter(r.URL.Query())
	if !ok {
		http.Error(w, "invalid filter", http.StatusBadRequest)
		return
	}
	// Read before the headers go out: a session ended after that is
	// seen at the next check.
	checked := c.Now()
	var cursor int64
	switch {
	case r.Header.Get("Last-Event-ID") != "":
		if cursor, ok = parseSeq(r.Header.Get("Last-Event-ID")); !ok {
			http.Error(w, "Last-Event-ID is not a feed position", http.StatusBadRequest)
			return
		}
	case r.URL.Query().Get("after") != "":
		if cursor, ok = parseSeq(r.URL.Query().Get("after")); !ok {
			http.Error(w, "after is not a feed position", http.StatusBadRequest)
			return
		}
	default:
		n, err := c.DB.LastEventSeq(r.Context())
		if err != nil {
			c.Log.Error("console: feed start", zap.Error(err))
			http.Error(w, "the events could not be read", http.StatusServiceUnavailable)
			return
		}
		cursor = n
	}
	select {
	case c.streams <- struct{}{}:
		defer func() { <-c.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many live feeds are open", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The browser reconnects a second after a drop (its default is 3 s).
	if !c.feedWrite(rc, w, "retry: 1000\n\n") || rc.Flush() != nil {
		return
	}
	q := f.query(c.Now())
	tick := time.NewTicker(c.PollInterval)
	defer tick.Stop()
	quiet := time.Now()
	for {
		// A feed outlives its first request: a session that was signed
		// out, expired or lost its token stops receiving events.
		if c.Now().Sub(checked) > feedSessionCheck {
			if _, err := c.lookup(r); err != nil {
				return
			}
			checked = c.Now()
		}
		page, err := c.DB.EventsAfter(r.Context(), cursor, q, feedPage)
		if err != nil {
			if r.Context().Err() == nil {
				c.Log.Error("console: feed", zap.Error(err))
			}
			return
		}
		for _, e := range page {
			var d docFields
			_ = json.Unmarshal([]byte(e.Doc), &d)
			b, _ := json.Marshal(feedEvent{
				Seq: e.Seq, ID: e.ID, Time: e.Time.Format(time.RFC3339Nano), FusionSet: e.FusionSet, Reason: e.Reason,
				Action: e.Action, ClientIP: e.ClientIP, DeviceID: e.DeviceID, ExternalID: e.ExternalID, Score: d.Score,
			})
			if !c.feedWrite(rc, w, fmt.Sprintf("id: %d\nevent: threat\ndata: %s\n\n", e.Seq, b)) {
				return
			}
			cursor = e.Seq
		}
		if len(page) > 0 {
			quiet = time.Now()
			if err := rc.Flush(); err != nil {
				return
			}
		} else if time.Since(quiet) > feedHeartbeat {
			if !c.feedWrite(rc, w, ": keep-alive\n\n") || rc.Flush() != nil {
				return
			}
			quiet = time.Now()
		}
		if len(page) == feedPage {
			continue // more waiting: no pause
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// feedWrite writes s with a fresh write deadline: the feed lives longer
// than the server's WriteTimeout, a client that stops reading does not.
func (c *Console) feedWrite(rc *http.ResponseController, w http.ResponseWriter, s string) bool {
	_ = rc.SetWriteDeadline(time.Now().Add(feedWriteTimeout)) // unsupported writers keep their deadline
	_, err := w.Write([]byte(s))
	return err == nil
}
