package console

import (
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/mccgate/mcc/server/store"
)

// ranges are the time ranges a view offers, with the chart bucket of
// each (about a hundred points per chart).
var ranges = []struct {
	name   string
	span   time.Duration
	bucket time.Duration
}{
	{"1h", time.Hour, time.Minute},
	{"24h", 24 * time.Hour, 15 * time.Minute},
	{"7d", 7 * 24 * time.Hour, 2 * time.Hour},
}

const defaultRange = "24h"

// filter is what every view's URL says: the time range and the event
// fields to match. It lives in the query string so a view can be shared
// and reloaded.
type filter struct {
	Range      string
	FusionSet  string
	Reason     string
	Action     string
	ClientIP   string
	DeviceID   string
	Serial     string
	BuildID    string
	ExternalID string
}

// filterParams are the query parameters and where each goes; the names
// are the API's (GET /v1/events) where it has them.
var filterParams = []struct {
	name string
	dst  func(f *filter) *string
}{
	{"fusionSet", func(f *filter) *string { return &f.FusionSet }},
	{"reason", func(f *filter) *string { return &f.Reason }},
	{"action", func(f *filter) *string { return &f.Action }},
	{"clientIP", func(f *filter) *string { return &f.ClientIP }},
	{"deviceId", func(f *filter) *string { return &f.DeviceID }},
	{"serial", func(f *filter) *string { return &f.Serial }},
	{"build", func(f *filter) *string { return &f.BuildID }},
	{"externalId", func(f *filter) *string { return &f.ExternalID }},
}

// maxFilterBytes matches the API's bound on indexed values.
const maxFilterBytes = 256

// parseFilter reads the filter of a URL; ok is false when a value is not
// one a stored event could hold (too long, not UTF-8), or the range is
// not one offered.
func parseFilter(q url.Values) (f filter, ok bool) {
	f.Range = q.Get("range")
	if f.Range == "" {
		f.Range = defaultRange
	}
	if _, _, found := rangeOf(f.Range); !found {
		return f, false
	}
	for _, p := range filterParams {
		v := q.Get(p.name)
		if len(v) > maxFilterBytes || !utf8.ValidString(v) {
			return f, false
		}
		*p.dst(&f) = v
	}
	return f, true
}

func rangeOf(name string) (span, bucket time.Duration, found bool) {
	for _, r := range ranges {
		if r.name == name {
			return r.span, r.bucket, true
		}
	}
	return 0, 0, false
}

// window is the filter's range ending now: [from, to), to the end of the
// current minute so the newest events count.
func (f filter) window(now time.Time) (from, to time.Time, bucket time.Duration) {
	span, bucket, _ := rangeOf(f.Range)
	to = now.UTC().Truncate(time.Minute).Add(time.Minute)
	from = to.Add(-span)
	return from, to, bucket
}

// query is the store query of the filter over its window.
func (f filter) query(now time.Time) store.EventQuery {
	from, to, _ := f.window(now)
	return store.EventQuery{
		FusionSet: f.FusionSet, Reason: f.Reason, Action: f.Action, ClientIP: f.ClientIP,
		DeviceID: f.DeviceID, Serial: f.Serial, BuildID: f.BuildID, ExternalID: f.ExternalID,
		From: from, To: to,
	}
}

// values is the filter as query parameters (empty ones left out).
func (f filter) values() url.Values {
	v := url.Values{}
	if f.Range != defaultRange {
		v.Set("range", f.Range)
	}
	for _, p := range filterParams {
		if s := *p.dst(&f); s != "" {
			v.Set(p.name, s)
		}
	}
	return v
}

// with is the filter with one more parameter set (a drill-down link).
func (f filter) with(name, value string) filter {
	if name == "range" {
		f.Range = value
		return f
	}
	for _, p := range filterParams {
		if p.name == name {
			*p.dst(&f) = value
		}
	}
	return f
}

// link is path with the filter's query.
func (f filter) link(path string) string {
	if q := f.values().Encode(); q != "" {
		return path + "?" + q
	}
	return path
}

// active lists the filter's set fields, for the "filtered by" line.
func (f filter) active() []string {
	var out []string
	for _, p := range filterParams {
		if s := *p.dst(&f); s != "" {
			out = append(out, p.name+"="+s)
		}
	}
	return out
}
