package report

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"strconv"
)

// CSVHeader is the first line of the CSV report.
var CSVHeader = []string{"month", "ura", "organisation", "requests", "permitted", "denied",
	"distinct_patients", "distinct_professionals", "medication_queries", "gp_summary_queries", "alerts"}

// CSV writes one line per organisation, then the line for all of them
// (ura "all").
func (r *Report) CSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, o := range append(append([]Org(nil), r.Orgs...), r.Total) {
		n := func(v int) string { return strconv.Itoa(v) }
		rec := []string{r.Month, o.URA, o.Name, n(o.Requests), n(o.Permitted), n(o.Denied),
			n(o.Patients), n(o.Professionals), n(o.Medication), n(o.GPSummary), n(o.Alerts)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Chart geometry of the queries-per-day chart.
const (
	chartLeft   = 48
	chartTop    = 16
	chartHeight = 200
	chartBar    = 20 // width per day
)

type bar struct {
	X, Width                     int
	PermitY, PermitH             int
	DenyY, DenyH, OtherY, OtherH int
	Label, Title                 string
}

type chart struct {
	Width, Height, Bottom, Right int
	Max                          int
	Bars                         []bar
	Ticks                        []tick
}

type tick struct {
	Y     int
	Label string
}

func (r *Report) chart() chart {
	c := chart{Right: chartLeft + chartBar*len(r.Days), Bottom: chartTop + chartHeight}
	c.Width, c.Height = c.Right+16, c.Bottom+40
	for _, d := range r.Days {
		c.Max = max(c.Max, d.Queries)
	}
	scale := func(v int) int {
		if c.Max == 0 {
			return 0
		}
		return (v*chartHeight + c.Max/2) / c.Max
	}
	for i := 0; i <= 4; i++ {
		v := c.Max * i / 4
		c.Ticks = append(c.Ticks, tick{Y: c.Bottom - scale(v), Label: strconv.Itoa(v)})
	}
	for i, d := range r.Days {
		x := chartLeft + i*chartBar + 2
		b := bar{X: x, Width: chartBar - 4, Label: strconv.Itoa(d.Date.Day()),
			Title: fmt.Sprintf("%s: %d queries, %d permitted, %d denied", d.Date.Format("2006-01-02"), d.Queries, d.Permitted, d.Denied)}
		other := d.Queries - d.Permitted - d.Denied
		b.PermitH, b.DenyH, b.OtherH = scale(d.Permitted), scale(d.Denied), scale(other)
		b.PermitY = c.Bottom - b.PermitH
		b.DenyY = b.PermitY - b.DenyH
		b.OtherY = b.DenyY - b.OtherH
		c.Bars = append(c.Bars, b)
	}
	return c
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Schakelpunt access report {{.R.Month}}</title>
<style>
body { font-family: system-ui, sans-serif; color: #1a1a1a; background: #fff; margin: 2rem; line-height: 1.4; }
h1, h2 { font-weight: 600; }
table { border-collapse: collapse; margin: 1rem 0 2rem; }
caption { text-align: left; font-weight: 600; padding-bottom: .5rem; }
th, td { border: 1px solid #767676; padding: .3rem .6rem; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tfoot th, tfoot td { font-weight: 600; background: #f0f0f0; }
.permit { fill: #1b5e20; } .deny { fill: #b71c1c; } .other { fill: #5f5f5f; }
.axis { stroke: #1a1a1a; } .grid { stroke: #d0d0d0; }
svg text { font-size: 11px; fill: #1a1a1a; }
.key span { display: inline-block; width: .9em; height: .9em; margin: 0 .3em 0 1em; vertical-align: middle; }
</style>
</head>
<body>
<main>
<h1>Access report {{.R.Month}}</h1>
<p>From the access log of the switching point: {{.R.Events}} AuditEvents this month. Patients are counted, never named.</p>

<h2 id="per-day">Patient-data queries per day</h2>
<figure>
<svg role="img" aria-labelledby="chart-title chart-desc" width="{{.C.Width}}" height="{{.C.Height}}" viewBox="0 0 {{.C.Width}} {{.C.Height}}" xmlns="http://www.w3.org/2000/svg">
<title id="chart-title">Patient-data queries per day, {{.R.Month}}</title>
<desc id="chart-desc">Bars per day: permitted at the bottom, denied above them, other outcomes on top. The table below gives the same numbers.</desc>
{{- range .C.Ticks}}
<line class="grid" x1="{{$.Left}}" x2="{{$.C.Right}}" y1="{{.Y}}" y2="{{.Y}}"/><text x="{{$.LabelX}}" y="{{.Y}}" text-anchor="end" dominant-baseline="middle">{{.Label}}</text>
{{- end}}
<line class="axis" x1="{{.Left}}" x2="{{.C.Right}}" y1="{{.C.Bottom}}" y2="{{.C.Bottom}}"/>
{{- range .C.Bars}}
<g><title>{{.Title}}</title>
<rect class="permit" x="{{.X}}" y="{{.PermitY}}" width="{{.Width}}" height="{{.PermitH}}"/>
<rect class="deny" x="{{.X}}" y="{{.DenyY}}" width="{{.Width}}" height="{{.DenyH}}"/>
<rect class="other" x="{{.X}}" y="{{.OtherY}}" width="{{.Width}}" height="{{.OtherH}}"/>
<text x="{{.X}}" y="{{$.LabelY}}" dx="8" text-anchor="middle">{{.Label}}</text></g>
{{- end}}
</svg>
<figcaption class="key"><span style="background:#1b5e20"></span>permitted<span style="background:#b71c1c"></span>denied<span style="background:#5f5f5f"></span>other (no decision recorded)</figcaption>
</figure>

<table>
<caption>Patient-data queries per day</caption>
<thead><tr><th scope="col">Date</th><th scope="col" class="n">Queries</th><th scope="col" class="n">Permitted</th><th scope="col" class="n">Denied</th></tr></thead>
<tbody>
{{- range .R.Days}}
<tr><th scope="row">{{.Date.Format "2006-01-02"}}</th><td class="n">{{.Queries}}</td><td class="n">{{.Permitted}}</td><td class="n">{{.Denied}}</td></tr>
{{- end}}
</tbody>
</table>

<h2 id="per-organisation">Per organisation</h2>
<table>
<caption>Requests per organisation, {{.R.Month}}</caption>
<thead><tr><th scope="col">URA</th><th scope="col">Organisation</th><th scope="col" class="n">Requests</th><th scope="col" class="n">Permitted</th><th scope="col" class="n">Denied</th><th scope="col" class="n">Distinct patients</th><th scope="col" class="n">Distinct professionals</th><th scope="col" class="n">Medication queries</th><th scope="col" class="n">GP summary queries</th><th scope="col" class="n">Alerts</th></tr></thead>
<tbody>
{{- range .R.Orgs}}
<tr><th scope="row">{{.URA}}</th><td>{{.Name}}</td><td class="n">{{.Requests}}</td><td class="n">{{.Permitted}}</td><td class="n">{{.Denied}}</td><td class="n">{{.Patients}}</td><td class="n">{{.Professionals}}</td><td class="n">{{.Medication}}</td><td class="n">{{.GPSummary}}</td><td class="n">{{.Alerts}}</td></tr>
{{- end}}
</tbody>
<tfoot>
{{- with .R.Total}}
<tr><th scope="row">all</th><td>{{.Name}}</td><td class="n">{{.Requests}}</td><td class="n">{{.Permitted}}</td><td class="n">{{.Denied}}</td><td class="n">{{.Patients}}</td><td class="n">{{.Professionals}}</td><td class="n">{{.Medication}}</td><td class="n">{{.GPSummary}}</td><td class="n">{{.Alerts}}</td></tr>
{{- end}}
</tfoot>
</table>

<h2 id="alerts">Abuse alerts by rule</h2>
<table>
<caption>Alerts raised in {{.R.Month}}</caption>
<thead><tr><th scope="col">Rule</th><th scope="col">Code</th><th scope="col" class="n">Alerts</th></tr></thead>
<tbody>
{{- range .R.Rules}}
<tr><th scope="row">{{.Display}}</th><td><code>{{.Rule}}</code></td><td class="n">{{.Alerts}}</td></tr>
{{- end}}
</tbody>
</table>
<p>An alert is a signal for review, not a finding: read it with the AuditEvents it points at (<code>Flag?code=…</code> on the FHIR API).</p>
</main>
</body>
</html>
`))

// HTML writes the report as one self-contained page: no script, no
// external resource; the chart is inline SVG and every number in it is
// also in a table.
func (r *Report) HTML(w io.Writer) error {
	c := r.chart()
	return page.Execute(w, struct {
		R              *Report
		C              chart
		Left           int
		LabelX, LabelY int
	}{r, c, chartLeft, chartLeft - 6, c.Bottom + 16})
}
