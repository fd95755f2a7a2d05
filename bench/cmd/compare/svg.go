package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Colours of the bars, by implementation key.
var barColour = map[string]string{"flight": "#2f6fb3", "xsync": "#8c8c8c", "resenje": "#e08a2c"}

// WriteSVG draws the rows with a target relative to x/sync as horizontal
// bars of each implementation's value divided by x/sync's (so x/sync is 1
// and shorter is better), with the target as a dashed red line, and lists
// the rows with an absolute target below the chart. It is hand-written SVG
// 1.1 with no script or external reference.
func WriteSVG(w io.Writer, outs []Outcome, m Machine) error {
	var rel, abs []Outcome
	for _, o := range outs {
		switch {
		case o.MaxX > 0 && o.Has["xsync"] && o.Val["xsync"] > 0:
			rel = append(rel, o)
		case o.HasAbs:
			abs = append(abs, o)
		}
	}
	const (
		width    = 1000
		left     = 280 // labels
		plotW    = 520
		barH     = 14
		barGap   = 3
		groupPad = 18
		top      = 112
	)
	groupH := len(Impls)*(barH+barGap) + groupPad
	axisMax := 2.0
	for _, o := range rel {
		axisMax = math.Max(axisMax, o.MaxX)
		for _, im := range Impls {
			if o.Has[im.Key] {
				axisMax = math.Max(axisMax, o.Val[im.Key]/o.Val["xsync"])
			}
		}
	}
	axisMax = math.Min(math.Ceil(axisMax), 12) // longer bars are clipped and marked
	x := func(r float64) float64 { return left + plotW*math.Min(r, axisMax)/axisMax }
	plotH := len(rel) * groupH
	height := top + plotH + 50 + 20*len(abs) + 30

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	text(&b, 20, 28, 16, "bold", "start", "flight vs golang.org/x/sync/singleflight vs resenje.org/singleflight")
	text(&b, 20, 48, 12, "normal", "start", "each implementation's median divided by x/sync's (x/sync = 1; shorter is better); dashed lines: flight's target")
	text(&b, 20, 66, 11, "normal", "start", m.String())

	// Grid and axis.
	for r := 0.0; r <= axisMax+1e-9; r++ {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e4e4e4"/>`+"\n", x(r), top-8, x(r), top+plotH)
		text(&b, x(r), float64(top+plotH+16), 11, "normal", "middle", trimFloat(r)+"×")
	}
	for gi, o := range rel {
		y0 := float64(top + gi*groupH)
		text(&b, left-10, y0+barH, 12, "bold", "end", o.Label)
		text(&b, left-10, y0+barH+16, 11, "normal", "end", o.Unit+" (target "+o.Target()+")")
		for i, im := range Impls {
			if !o.Has[im.Key] {
				continue
			}
			y := y0 + float64(i*(barH+barGap))
			r := o.Val[im.Key] / o.Val["xsync"]
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="%s"><title>%s: %s</title></rect>`+"\n",
				left, y, x(r)-left, barH, barColour[im.Key], im.Title, html.EscapeString(FormatValue(o.Val[im.Key], o.Unit)))
			label := fmt.Sprintf("%s %s (%s×)", im.Title, FormatValue(o.Val[im.Key], o.Unit), sig3(r))
			if r > axisMax {
				label = "▶ " + label
			}
			// Right of the bar and of the target lines, so no line crosses it.
			text(&b, math.Max(x(r), targets(o, x))+6, y+barH-3, 11, "normal", "start", label)
		}
		bottom := y0 + float64(len(Impls)*(barH+barGap))
		tx := x(o.MaxX)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-width="2" stroke-dasharray="4 3"/>`+"\n",
			tx, y0-4, tx, bottom)
		if rr, ok := resenjeTarget(o); ok { // flight ≤ MaxR × resenje, in x/sync units
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#7a3f00" stroke-width="2" stroke-dasharray="2 2"/>`+"\n",
				x(rr), y0-4, x(rr), bottom)
		}
	}

	// Rows with an absolute target.
	y := float64(top + plotH + 44)
	if len(abs) > 0 {
		text(&b, 20, y, 12, "bold", "start", "Absolute targets (flight):")
	}
	for _, o := range abs {
		y += 20
		var vals []string
		for _, im := range Impls {
			if o.Has[im.Key] {
				vals = append(vals, im.Title+" "+FormatValue(o.Val[im.Key], o.Unit))
			}
		}
		verdict := "FAIL"
		if o.Pass {
			verdict = "PASS"
		}
		text(&b, 30, y, 12, "normal", "start",
			fmt.Sprintf("%s, %s: %s; target %s: %s", o.Label, o.Unit, strings.Join(vals, ", "), o.Target(), verdict))
	}
	// Legend.
	for i, im := range Impls {
		lx := float64(20 + i*90)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="12" height="12" fill="%s"/>`+"\n", lx, top-36, barColour[im.Key])
		text(&b, lx+16, float64(top-26), 12, "normal", "start", im.Title)
	}
	fmt.Fprintf(&b, `<line x1="300" y1="%d" x2="330" y2="%d" stroke="#d62728" stroke-width="2" stroke-dasharray="4 3"/>`+"\n", top-30, top-30)
	text(&b, 336, float64(top-26), 12, "normal", "start", "target relative to x/sync")
	fmt.Fprintf(&b, `<line x1="500" y1="%d" x2="530" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="2 2"/>`+"\n", top-30, top-30, "#7a3f00")
	text(&b, 536, float64(top-26), 12, "normal", "start", "target relative to resenje")
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// resenjeTarget is the row's bound relative to resenje expressed in x/sync
// units (MaxR × resenje / x/sync), when the row has one.
func resenjeTarget(o Outcome) (float64, bool) {
	if o.MaxR == 0 || !o.Has["resenje"] {
		return 0, false
	}
	return o.MaxR * o.Val["resenje"] / o.Val["xsync"], true
}

// targets is the x of the rightmost target line of the row.
func targets(o Outcome, x func(float64) float64) float64 {
	t := x(o.MaxX)
	if rr, ok := resenjeTarget(o); ok {
		t = math.Max(t, x(rr))
	}
	return t
}

func text(b *strings.Builder, x, y float64, size int, weight, anchor, s string) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="%d" font-weight="%s" text-anchor="%s">%s</text>`+"\n",
		x, y, size, weight, anchor, html.EscapeString(s))
}
