package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/server/store"
)

// pageNames are the templates, each parsed with the layout.
var pageNames = []string{"signin", "error", "overview", "offenders", "events", "builds", "bans", "gateways"}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}

// render writes a page. data is the page's own; the layout's (session,
// CSRF token, navigation) is added here.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, s *session, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["Page"] = page
	if s != nil {
		data["Signed"] = true
		data["TokenName"] = s.caller.TokenName
		data["CSRF"] = s.csrf
	}
	var buf bytes.Buffer
	if err := c.pages[page].Execute(&buf, data); err != nil {
		c.Log.Error("console: rendering", zap.String("page", page), zap.Error(err))
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail answers with an error page (no details beyond message).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, message string) {
	c.render(w, r, status, "error", nil, map[string]any{"Title": http.StatusText(status), "Message": message})
}

// internal logs err and answers 500 without its text.
func (c *Console) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	if r.Context().Err() == nil {
		c.Log.Error("console: "+what, zap.Error(err))
	}
	c.fail(w, r, http.StatusInternalServerError, "The server could not read "+what+".")
}

// filterOf reads the request's filter, answering 400 when it is invalid.
func (c *Console) filterOf(w http.ResponseWriter, r *http.Request) (filter, bool) {
	f, ok := parseFilter(r.URL.Query())
	if !ok {
		c.fail(w, r, http.StatusBadRequest, "The filter in the address is not valid (range is 1h, 24h or 7d; values at most 256 bytes).")
	}
	return f, ok
}

// common is what every view shows: the filter, the range links. extra
// are the view's own parameters (the offenders' tab), kept by the links.
func common(f filter, path string, extra url.Values) map[string]any {
	type rangeLink struct {
		Name, Link string
		Current    bool
	}
	link := func(f filter) string {
		v := f.values()
		for k, vs := range extra {
			v[k] = vs
		}
		if q := v.Encode(); q != "" {
			return path + "?" + q
		}
		return path
	}
	var rl []rangeLink
	for _, r := range ranges {
		rl = append(rl, rangeLink{r.name, link(f.with("range", r.name)), r.name == f.Range})
	}
	return map[string]any{"Filter": f, "Ranges": rl, "Active": f.active(), "Clear": link(filter{Range: f.Range})}
}

// overview: events per bucket by reason, by fusion set and by action,
// from the rollups, and the newest events with the live feed.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	f, ok := c.filterOf(w, r)
	if !ok {
		return
	}
	now := c.Now()
	data := common(f, Prefix+"/overview", nil)
	if err := c.overviewCharts(r.Context(), f, now, data); err != nil {
		c.internal(w, r, "the rollups", err)
		return
	}
	// The feed continues after the newest number at render time, read
	// before the list below: an event stored in between is in both, and
	// the page shows it once (rows carry their event id).
	after, err := c.DB.LastEventSeq(r.Context())
	if err != nil {
		c.internal(w, r, "the event sequence", err)
		return
	}
	q := f.query(now)
	q.Limit = 20
	latest, _, err := c.DB.ListEvents(r.Context(), q)
	if err != nil {
		c.internal(w, r, "the events", err)
		return
	}
	stream := f.link(Prefix + "/stream")
	sep := "?"
	if strings.Contains(stream, "?") {
		sep = "&"
	}
	data["Title"] = "Overview"
	data["Latest"] = rowsOf(latest, f)
	data["Stream"] = stream + sep + "after=" + strconv.FormatInt(after, 10)
	data["Charts"] = f.link(Prefix + "/overview/charts")
	data["EventsLink"] = f.link(Prefix + "/events")
	c.render(w, r, http.StatusOK, "overview", s, data)
}

// overviewChartsFragment serves the overview's total, charts and legends
// alone: the open page fetches them again while events arrive, so its
// charts follow the live feed.
func (c *Console) overviewChartsFragment(w http.ResponseWriter, r *http.Request, _ *session) {
	f, ok := c.filterOf(w, r)
	if !ok {
		return
	}
	data := map[string]any{}
	if err := c.overviewCharts(r.Context(), f, c.Now(), data); err != nil {
		if r.Context().Err() == nil {
			c.Log.Error("console: the rollups", zap.Error(err))
		}
		http.Error(w, "the charts could not be read", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := c.pages["overview"].ExecuteTemplate(&buf, "charts", data); err != nil {
		c.Log.Error("console: rendering the charts", zap.Error(err))
		http.Error(w, "the charts could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// overviewCharts adds to data the total, the legends and the SVG charts
// of f's range at now, from the rollups.
func (c *Console) overviewCharts(ctx context.Context, f filter, now time.Time, data map[string]any) error {
	from, to, bucket := f.window(now)
	buckets := int(to.Sub(from) / bucket)
	rows, err := c.DB.Rollups(ctx, store.RollupQuery{From: from, To: to, Bucket: bucket, FusionSet: f.FusionSet, Reason: f.Reason, Action: f.Action})
	if err != nil {
		return err
	}
	byReason, bySet, byAction := map[string][]int64{}, map[string][]int64{}, map[string][]int64{}
	add := func(m map[string][]int64, k string, i int, n int64) {
		if m[k] == nil {
			m[k] = make([]int64, buckets)
		}
		m[k][i] += n
	}
	var total int64
	for _, row := range rows {
		if row.Bucket < 0 || row.Bucket >= buckets {
			continue
		}
		add(byReason, row.Reason, row.Bucket, row.Count)
		add(bySet, row.FusionSet, row.Bucket, row.Count)
		add(byAction, row.Action, row.Bucket, row.Count)
		total += row.Count
	}
	eventsLink := func(param string) func(string) string {
		return func(v string) string { return f.with(param, v).link(Prefix + "/events") }
	}
	reasons := topSeries(byReason, buckets, eventsLink("reason"))
	sets := topSeries(bySet, buckets, eventsLink("fusionSet"))
	actions := topSeries(byAction, buckets, eventsLink("action"))
	per := "per " + strings.TrimSuffix(strings.TrimSuffix(bucket.String(), "0s"), "0m")
	data["Total"] = total
	data["Per"] = per
	data["Reasons"], data["Sets"], data["Actions"] = reasons, sets, actions
	data["ReasonChart"] = svgChart("Events "+per+" by reason", reasons, from, bucket, buckets)
	data["SetChart"] = svgChart("Events "+per+" by fusion set", sets, from, bucket, buckets)
	data["ActionChart"] = svgChart("Blocked and reported "+per, actions, from, bucket, buckets)
	return nil
}

// eventRow is an event as a table row shows it, the document pretty.
type eventRow struct {
	ID, Time, FusionSet, Reason, Action, ClientIP, DeviceID, ExternalID, Serial, Build string
	Score                                                                              int64
	Pretty                                                                             string
	ReasonLink, ClientLink, DeviceLink                                                 string
}

// docFields are the fields a row reads from the stored document (the
// store keeps the indexed ones as columns, but a listing reads only the
// document).
type docFields struct {
	Time          time.Time `json:"time"`
	FusionSet     string    `json:"fusionSet"`
	Reason        string    `json:"reasonCode"`
	Action        string    `json:"action"`
	ClientIP      string    `json:"clientIP"`
	DeviceID      string    `json:"deviceID"`
	ExternalID    string    `json:"externalID"`
	Score         int64     `json:"threatEventsScore"`
	FusedAppToken string    `json:"fusedAppToken"`
	Certificate   *struct {
		Serial  string `json:"serial"`
		BuildID string `json:"buildID"`
	} `json:"certificate"`
}

func rowsOf(events []store.Event, f filter) []eventRow {
	out := make([]eventRow, 0, len(events))
	for _, e := range events {
		var d docFields
		_ = json.Unmarshal([]byte(e.Doc), &d) // stored documents were checked at ingest
		var pretty bytes.Buffer
		if json.Indent(&pretty, []byte(e.Doc), "", "  ") != nil {
			pretty.Reset()
			pretty.WriteString(e.Doc)
		}
		row := eventRow{
			ID: e.ID, Time: e.Time.UTC().Format("2006-01-02 15:04:05"), FusionSet: d.FusionSet, Reason: d.Reason,
			Action: d.Action, ClientIP: d.ClientIP, DeviceID: d.DeviceID, ExternalID: d.ExternalID, Score: d.Score,
			Build: d.FusedAppToken, Pretty: pretty.String(),
		}
		if d.Certificate != nil {
			row.Serial = d.Certificate.Serial
			if row.Build == "" {
				row.Build = d.Certificate.BuildID
			}
		}
		row.ReasonLink = f.with("reason", row.Reason).link(Prefix + "/events")
		if row.ClientIP != "" {
			row.ClientLink = f.with("clientIP", row.ClientIP).link(Prefix + "/events")
		}
		if row.DeviceID != "" {
			row.DeviceLink = f.with("deviceId", row.DeviceID).link(Prefix + "/events")
		}
		out = append(out, row)
	}
	return out
}

// offenderKinds are the tabs of the offenders view, in order, with the
// events filter each subject links to.
var offenderKinds = []struct{ kind, label, param string }{
	{"address", "Client addresses", "clientIP"},
	{"device", "Device ids", "deviceId"},
	{"certificate", "Certificates", "serial"},
	{"build", "Builds", "build"},
}

// offenders: the subjects with the most events in the range.
func (c *Console) offenders(w http.ResponseWriter, r *http.Request, s *session) {
	f, ok := c.filterOf(w, r)
	if !ok {
		return
	}
	kind := r.URL.Query().Get("kind")
	if kind == "" {
		kind = "address"
	}
	param := ""
	type tab struct {
		Label, Link string
		Current     bool
	}
	var tabs []tab
	for _, k := range offenderKinds {
		v := f.values()
		v.Set("kind", k.kind)
		tabs = append(tabs, tab{k.label, Prefix + "/offenders?" + v.Encode(), k.kind == kind})
		if k.kind == kind {
			param = k.param
		}
	}
	if param == "" {
		c.fail(w, r, http.StatusBadRequest, "kind is address, device, certificate or build.")
		return
	}
	list, err := c.DB.TopOffenders(r.Context(), kind, f.query(c.Now()), 50)
	if err != nil {
		c.internal(w, r, "the offenders", err)
		return
	}
	type row struct {
		Subject, Link, Last string
		Count, MaxScore     int64
	}
	rows := make([]row, len(list))
	for i, o := range list {
		rows[i] = row{o.Subject, f.with(param, o.Subject).link(Prefix + "/events"), o.Last.Format("2006-01-02 15:04:05"), o.Count, o.MaxScore}
	}
	data := common(f, Prefix+"/offenders", url.Values{"kind": {kind}})
	data["Title"] = "Top offenders"
	data["Tabs"] = tabs
	data["Rows"] = rows
	data["Kind"] = kind
	c.render(w, r, http.StatusOK, "offenders", s, data)
}

// eventsPage is how many events a page of the events view shows.
const eventsPage = 50

// events: the events matching the filter, newest first, each expandable
// to its document; the search box finds an event by its externalID (the
// reference the block message shows the user).
func (c *Console) events(w http.ResponseWriter, r *http.Request, s *session) {
	f, ok := c.filterOf(w, r)
	if !ok {
		return
	}
	q := f.query(c.Now())
	q.Limit = eventsPage
	if b := r.URL.Query().Get("before"); b != "" {
		key, ok := parseKey(b)
		if !ok {
			c.fail(w, r, http.StatusBadRequest, "before is not a position of this listing.")
			return
		}
		q.After = &key
	}
	list, next, err := c.DB.ListEvents(r.Context(), q)
	if err != nil {
		c.internal(w, r, "the events", err)
		return
	}
	data := common(f, Prefix+"/events", nil)
	data["Title"] = "Events"
	data["Rows"] = rowsOf(list, f)
	if next != nil {
		v := f.values()
		v.Set("before", strconv.FormatInt(next.TimeNS, 10)+"_"+next.ID)
		data["Older"] = Prefix + "/events?" + v.Encode()
	}
	data["Export"] = f.link(Prefix + "/export")
	data["Hidden"] = hiddenFilter(f)
	c.render(w, r, http.StatusOK, "events", s, data)
}

// hiddenFilter is the filter minus externalId, as hidden inputs of the
// search form: a search keeps the rest of the filter.
func hiddenFilter(f filter) []struct{ Name, Value string } {
	var out []struct{ Name, Value string }
	f.ExternalID = ""
	for name, vs := range f.values() {
		out = append(out, struct{ Name, Value string }{name, vs[0]})
	}
	return out
}

// parseKey reads a listing position "<ns>_<id>".
func parseKey(s string) (store.EventKey, bool) {
	ns, id, ok := strings.Cut(s, "_")
	if !ok || len(id) == 0 || len(id) > maxFilterBytes {
		return store.EventKey{}, false
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || n < 0 {
		return store.EventKey{}, false
	}
	return store.EventKey{TimeNS: n, ID: id}, true
}

// Export bounds: a download is at most exportMax events, read in pages.
const (
	exportMax  = 100_000
	exportPage = 1000
)

// export streams the filter's events as JSON lines, newest first, each
// the event's document as stored, read page by page (memory stays one
// page whatever the range). At most exportMax lines, which the header
// X-Export-Limit states.
func (c *Console) export(w http.ResponseWriter, r *http.Request, _ *session) {
	f, ok := parseFilter(r.URL.Query())
	if !ok {
		http.Error(w, "invalid filter", http.StatusBadRequest)
		return
	}
	q := f.query(c.Now())
	q.Limit = exportPage
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="mcc-events-`+c.Now().UTC().Format("20060102T150405Z")+`.jsonl"`)
	w.Header().Set("X-Export-Limit", strconv.Itoa(exportMax))
	written := 0
	for written < exportMax {
		q.Limit = min(exportPage, exportMax-written)
		page, next, err := c.DB.ListEvents(r.Context(), q)
		if err != nil {
			if written == 0 {
				c.Log.Error("console: export", zap.Error(err))
				http.Error(w, "the events could not be read", http.StatusInternalServerError)
			}
			return // a cut download is visibly short; headers are gone
		}
		for _, e := range page {
			if _, err := fmt.Fprintf(w, "%s\n", e.Doc); err != nil {
				return
			}
			written++
		}
		if next == nil {
			return
		}
		q.After = next
	}
}
