package rehearsal

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"

	"github.com/seed-e5e14ead/consul-upgrade/planner"
)

// The timeline's geometry, in SVG user units (pixels).
const (
	svgWidth   = 1000
	svgHeight  = 440
	plotLeft   = 64
	plotRight  = svgWidth - 24
	plotTop    = 92
	plotBottom = svgHeight - 96
)

// Colours of the timeline (readable on white, distinct for colour-blind
// readers: blue, vermilion, orange, purple).
const (
	colOK       = "#0072b2"
	colIndet    = "#d55e00"
	colNotSent  = "#e69f00"
	colLeader   = "#7b3294"
	colBandA    = "#dde8f3"
	colBandB    = "#eef3f8"
	colGate     = "#c9d9ea"
	colNoLeader = "#f4c7b8"
	colGrid     = "#d0d0d0"
	colText     = "#222222"
)

// stepLabel is a short name for a step's band.
func stepLabel(s planner.Step) string {
	switch s.Kind {
	case planner.StepSnapshot:
		return "snapshot"
	case planner.StepSwapServer:
		return "swap " + s.Node
	case planner.StepTransferLeader:
		return "transfer→" + s.Target
	case planner.StepSwapClients:
		return fmt.Sprintf("clients ×%d", len(s.Nodes))
	case planner.StepAddServer:
		return "add server"
	case planner.StepRetireServer:
		return "retire " + s.Node
	}
	return string(s.Kind)
}

// textWidth estimates the width of an 11-unit label.
func textWidth(s string) float64 { return float64(len([]rune(s)))*6.6 + 6 }

// niceStep returns a round tick interval giving at most about n ticks
// over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// WriteSVG draws the timeline: answered operations per second (a line),
// indeterminate and not-sent operations per second (stacked bars), a band
// per step (darker where the step waited for its gate), a dashed line per
// leader change and a shaded strip where no leader was known.
func (r *Report) WriteSVG(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	// X: seconds from the traffic start to the end of the recording (or
	// of the last step, if later).
	end := r.Recorded
	for _, s := range r.Steps {
		end = max(end, s.End)
	}
	end = max(end, time.Duration(len(r.Series))*time.Second, time.Second)
	span := end.Seconds()
	x := func(d time.Duration) float64 {
		return plotLeft + (plotRight-plotLeft)*math.Min(math.Max(d.Seconds()/span, 0), 1)
	}
	peak := 1
	for _, s := range r.Series {
		peak = max(peak, s.OK+s.Indeterminate+s.NotSent)
	}
	// Headroom above the peak for the leader labels.
	yStep := niceStep(float64(peak)*1.25, 5)
	yMax := math.Ceil(float64(peak)*1.25/yStep) * yStep
	y := func(v float64) float64 { return plotBottom - (plotBottom-plotTop)*v/yMax }

	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", svgWidth, svgHeight, svgWidth, svgHeight)
	p(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, svgHeight)
	title := fmt.Sprintf("Rehearsal: Consul %s → %s, %d servers + %d clients", r.from(), r.Target, len(r.Servers), len(r.Clients))
	p(`<text x="%d" y="22" font-size="16" font-weight="bold" fill="%s">%s</text>`+"\n", plotLeft, colText, html.EscapeString(title))
	status := "done"
	if !r.Done {
		status = "NOT done"
	}
	sub := fmt.Sprintf("run %s in %s · %d ops, %d indeterminate, %d not sent · %d lost · %d election(s) · %s",
		status, dur(r.Wall), r.Traffic.Ops, r.Traffic.Indeterminate, r.Traffic.NotSent, len(r.Traffic.Lost), r.Elections(), r.Verdict())
	p(`<text x="%d" y="42" fill="%s">%s</text>`+"\n", plotLeft, colText, html.EscapeString(sub))

	// Step bands, labelled above the plot (number, and a name where it
	// fits).
	p(`<text x="%d" y="%d" font-size="11" fill="#555555">steps:</text>`+"\n", 8, plotTop-24)
	var rowEnd [2]float64 // where the last label of each row ends
	for i, s := range r.Steps {
		x0, x1 := x(s.Start), x(s.End)
		fill := colBandA
		if i%2 == 1 {
			fill = colBandB
		}
		p(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, plotTop, math.Max(x1-x0, 1), plotBottom-plotTop, fill)
		if s.GateStart >= 0 {
			g0 := x(s.GateStart)
			p(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", g0, plotTop, math.Max(x1-g0, 0.5), plotBottom-plotTop, colGate)
		}
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#9fb4c8" stroke-width="1"/>`+"\n", x0, plotTop-30, x0, plotBottom)
		// A band wide enough gets its number and name on the first row;
		// a narrow one its number alone, on the second row unless the
		// previous label there is in the way.
		label, rows := fmt.Sprintf("%d", i+1), []int{1, 0}
		if full := fmt.Sprintf("%d %s", i+1, stepLabel(s.Step)); textWidth(full) < x1-x0 {
			label, rows = full, []int{0, 1}
		}
		row := rows[0]
		if rowEnd[row] > x0+3 && rowEnd[rows[1]] <= x0+3 {
			row = rows[1]
		}
		rowEnd[row] = x0 + 3 + textWidth(label)
		p(`<text x="%.1f" y="%d" font-size="11" fill="%s">%s</text>`+"\n", x0+3, plotTop-24+14*row, colText, html.EscapeString(label))
	}

	// Leaderless stretches: a strip under the plot.
	for i, l := range r.NoLeader {
		if l.Leader != "" {
			continue
		}
		until := end
		if i+1 < len(r.NoLeader) {
			until = r.NoLeader[i+1].At
		}
		p(`<rect x="%.1f" y="%d" width="%.1f" height="6" fill="%s"/>`+"\n", x(l.At), plotBottom+1, math.Max(x(until)-x(l.At), 1.5), colNoLeader)
	}

	// Grid and Y axis.
	for v := 0.0; v <= yMax+1e-9; v += yStep {
		yy := y(v)
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="0.7"/>`+"\n", plotLeft, yy, plotRight, yy, colGrid)
		p(`<text x="%d" y="%.1f" text-anchor="end" fill="%s">%g</text>`+"\n", plotLeft-6, yy+4, colText, v)
	}
	p(`<text transform="translate(18 %d) rotate(-90)" text-anchor="middle" fill="%s">operations per second</text>`+"\n", (plotTop+plotBottom)/2, colText)

	// Failures: stacked bars per second.
	bw := math.Max((plotRight-plotLeft)/span-1, 1)
	for i, s := range r.Series {
		x0 := x(time.Duration(i) * time.Second)
		if s.Indeterminate > 0 {
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x0, y(float64(s.Indeterminate)), bw, plotBottom-y(float64(s.Indeterminate)), colIndet)
		}
		if s.NotSent > 0 {
			base := y(float64(s.Indeterminate))
			top := y(float64(s.Indeterminate + s.NotSent))
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x0, top, bw, base-top, colNotSent)
		}
	}
	// Answered operations: a line through each second's middle.
	if len(r.Series) > 0 {
		var pts []string
		for i, s := range r.Series {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(time.Duration(i)*time.Second+500*time.Millisecond), y(float64(s.OK))))
		}
		p(`<polyline points="%s" fill="none" stroke="%s" stroke-width="1.8" stroke-linejoin="round"/>`+"\n", strings.Join(pts, " "), colOK)
	}

	// Elections: a dashed line and the new leader's name.
	last := ""
	n := 0
	for _, l := range r.Leaders {
		if l.Elected {
			xx := x(l.At)
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="1.6" stroke-dasharray="5,3"/>`+"\n", xx, plotTop, xx, plotBottom, colLeader)
			anchor, dx := "start", 4.0
			if xx > plotRight-90 {
				anchor, dx = "end", -4
			}
			label := "leader " + l.Leader
			if l.Leader == last {
				label += " again"
			}
			p(`<text x="%.1f" y="%d" font-size="11" text-anchor="%s" fill="%s">%s</text>`+"\n", xx+dx, plotTop+14+14*(n%3), anchor, colLeader, html.EscapeString(label))
			n++
		}
		last = l.Leader
	}

	// X axis.
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1"/>`+"\n", plotLeft, plotBottom, plotRight, plotBottom, colText)
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1"/>`+"\n", plotLeft, plotTop, plotLeft, plotBottom, colText)
	xStep := niceStep(span, 10)
	for v := 0.0; v <= span+1e-9; v += xStep {
		xx := x(time.Duration(v * float64(time.Second)))
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", xx, plotBottom, xx, plotBottom+5, colText)
		p(`<text x="%.1f" y="%d" text-anchor="middle" fill="%s">%g</text>`+"\n", xx, plotBottom+20, colText, v)
	}
	p(`<text x="%d" y="%d" text-anchor="middle" fill="%s">seconds since the traffic started</text>`+"\n", (plotLeft+plotRight)/2, plotBottom+38, colText)

	// Legend.
	ly := svgHeight - 22
	lx := float64(plotLeft)
	item := func(kind, colour, text string) {
		switch kind {
		case "line":
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", lx, ly, lx+16, ly, colour)
		case "dash":
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="5,3"/>`+"\n", lx, ly, lx+16, ly, colour)
		case "strip":
			p(`<rect x="%.1f" y="%d" width="16" height="6" fill="%s"/>`+"\n", lx, ly-3, colour)
		default:
			p(`<rect x="%.1f" y="%d" width="16" height="11" fill="%s" stroke="#9fb4c8" stroke-width="0.5"/>`+"\n", lx, ly-6, colour)
		}
		p(`<text x="%.1f" y="%d" fill="%s">%s</text>`+"\n", lx+21, ly+4, colText, html.EscapeString(text))
		lx += 21 + float64(len([]rune(text)))*7 + 20
	}
	item("line", colOK, "answered")
	item("box", colIndet, "indeterminate")
	item("box", colNotSent, "not sent")
	item("dash", colLeader, "election")
	item("box", colBandA, "step (act)")
	item("box", colGate, "gate wait")
	item("strip", colNoLeader, "no leader named")
	p("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
