package console

import (
	"cmp"
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"
)

// series is one line of a chart: its name, its count per bucket and its
// total, with the link to its events.
type series struct {
	Name   string
	Counts []int64
	Total  int64
	Link   string
	Class  string // s0..s7: the colour, from console.css
}

// maxSeries is how many lines a chart draws; the rest are summed into
// "other" (named so, without a link).
const maxSeries = 7

// topSeries orders series by total (name on ties), keeps maxSeries and
// sums the rest into "other".
func topSeries(all map[string][]int64, buckets int, link func(name string) string) []series {
	var out []series
	for name, counts := range all {
		s := series{Name: name, Counts: counts}
		for _, n := range counts {
			s.Total += n
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b series) int {
		return cmp.Or(cmp.Compare(b.Total, a.Total), strings.Compare(a.Name, b.Name))
	})
	if len(out) > maxSeries {
		other := series{Name: "other", Counts: make([]int64, buckets)}
		for _, s := range out[maxSeries:] {
			for i, n := range s.Counts {
				other.Counts[i] += n
			}
			other.Total += s.Total
		}
		out = append(out[:maxSeries], other)
	}
	for i := range out {
		out[i].Class = "s" + strconv.Itoa(i)
		if out[i].Name != "other" || i < maxSeries {
			out[i].Link = link(out[i].Name)
		}
	}
	return out
}

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartW, chartH = 720, 180
	padL, padR     = 48, 8
	padT, padB     = 8, 22
)

// svgChart draws the series as lines over the buckets starting at from.
// Every text in it is escaped; no style attribute is used (the CSP allows
// only the console's style file), the colours come from classes.
func svgChart(title string, ss []series, from time.Time, bucket time.Duration, buckets int) template.HTML {
	var peak int64
	for _, s := range ss {
		for _, n := range s.Counts {
			peak = max(peak, n)
		}
	}
	yMax := max(peak, 1)
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	x := func(i int) float64 {
		if buckets <= 1 {
			return padL
		}
		return padL + plotW*float64(i)/float64(buckets-1)
	}
	y := func(n int64) float64 { return padT + plotH - plotH*float64(n)/float64(yMax) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, padL, chartH-padB, chartW-padR, chartH-padB)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, padL, padT, padL, chartH-padB)
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">%d</text>`, padL-4, padT+10, peak)
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">0</text>`, padL-4, chartH-padB)
	end := from.Add(bucket * time.Duration(buckets))
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d">%s</text>`, padL, chartH-6, from.Format("Jan 2 15:04"))
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">%s UTC</text>`, chartW-padR, chartH-6, end.Format("Jan 2 15:04"))
	for _, s := range ss {
		fmt.Fprintf(&b, `<polyline class="line %s" points="`, s.Class)
		for i, n := range s.Counts {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", x(i), y(n))
		}
		fmt.Fprintf(&b, `"><title>%s: %d</title></polyline>`, template.HTMLEscapeString(s.Name), s.Total)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every dynamic part escaped above
}
