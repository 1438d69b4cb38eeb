// Command roame2e-plot draws the picture of the side-by-side benchmark's
// reassigns (package roam/bench/e2e): `roame2e-plot SUMMARY.json DIR`
// writes one PNG with a panel per arm, roam first, under the names
// Summary.PictureNames gives, and prints each path it wrote. It is a module
// of its own so that gonum stays out of roam's go.mod; `make bench-e2e`
// builds it to bin/roame2e-plot, and roame2e runs it after writing the
// summary.
package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"roam/bench/e2e"
)

var (
	colorA  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorB  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colorRA = color.RGBA{A: 0xff}
)

// reassignPlot draws packets per second answered by each VM over time,
// with the reassign command's start and end marked.
func reassignPlot(r *e2e.ArmResult) (*plot.Plot, error) {
	p := plot.New()
	s := r.Seq
	lostAt, elsewhere := r.SplitLost()
	p.Title.Text = fmt.Sprintf("%s: reassign under a 2000 pkt/s UDP stream: %d lost at the reassign, %d elsewhere; TCP survived: %v", r.Arm, lostAt, elsewhere, r.TCPSurvived)
	p.X.Label.Text = "time since the stream started (s)"
	p.Y.Label.Text = "answers per second"
	p.Y.Min, p.Y.Max = 0, 3800
	top := 2500
	for _, b := range s.Bins {
		for _, n := range b {
			top = max(top, n*1000/s.BinMS)
		}
	}
	step := 500
	if top > 5000 {
		step = 2000
	}
	var ticks []plot.Tick
	for v := 0; v <= top+step; v += step {
		ticks = append(ticks, plot.Tick{Value: float64(v), Label: fmt.Sprint(v)})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	scale := 1000 / float64(s.BinMS)
	bins := s.Bins
	if len(bins) > 1 {
		bins = bins[:len(bins)-1] // the last bin is cut short by the end of the stream
	}
	for _, vm := range []struct {
		id, name string
		c        color.Color
	}{{"A", "vmA", colorA}, {"B", "vmB", colorB}} {
		pts := make(plotter.XYs, len(bins))
		for i, b := range bins {
			pts[i].X = float64(i*s.BinMS) / 1000
			pts[i].Y = float64(b[vm.id]) * scale
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = vm.c
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(vm.name, l)
	}
	if len(s.LostSeqs) > 0 {
		// Each lost datagram at the time it was sent (2000 per second).
		pts := make(plotter.XYs, len(s.LostSeqs))
		for i, q := range s.LostSeqs {
			pts[i].X, pts[i].Y = float64(q)/2000, 60
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle.Shape = draw.CrossGlyph{}
		sc.GlyphStyle.Color = colorRA
		sc.GlyphStyle.Radius = vg.Points(3)
		p.Add(sc)
		p.Legend.Add("lost datagram (when sent)", sc)
	}
	at := float64(r.ReassignAtNS-s.StartNS) / float64(time.Second)
	end := float64(r.ReassignEnd-s.StartNS) / float64(time.Second)
	for i, x := range []float64{at, end} {
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: 2500}})
		if err != nil {
			return nil, err
		}
		l.Color = colorRA
		l.Width = vg.Points(1)
		if i == 0 {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Legend.Add(fmt.Sprintf("reassign command (%.1f ms)", r.ReassignMS), l)
		} else {
			l.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		}
		p.Add(l)
	}
	// Above the 2000 pkt/s lines, out of their way.
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(6)
	p.Add(plotter.NewGrid())
	return p, nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: roame2e-plot SUMMARY.json DIR")
		os.Exit(2)
	}
	sum, err := e2e.ReadSummary(os.Args[1])
	if err == nil {
		var files []string
		files, err = writePictures(sum, os.Args[2])
		for _, f := range files {
			fmt.Println(f)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "roame2e-plot:", err)
		os.Exit(1)
	}
}

// writePictures draws one PNG with a panel per arm that has a reassign,
// roam first, under sum.PictureNames() in dir.
func writePictures(s *e2e.Summary, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var plots []*plot.Plot
	for _, arm := range e2e.PictureArms(s) {
		r := s.PickReassign(arm)
		if r == nil {
			p := plot.New()
			p.Title.Text = arm + ": no reassign measured" + s.FirstError(arm)
			p.HideAxes()
			plots = append(plots, p)
			continue
		}
		p, err := reassignPlot(r)
		if err != nil {
			return nil, err
		}
		plots = append(plots, p)
	}
	if len(plots) == 0 {
		return nil, nil
	}
	const w, rowH = 22 * vg.Centimeter, 8 * vg.Centimeter
	img := vgimg.New(w, rowH*vg.Length(len(plots)))
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter, PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(grid, t, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	var files []string
	for _, n := range s.PictureNames() {
		path := filepath.Join(dir, n)
		f, err := os.Create(path)
		if err != nil {
			return files, err
		}
		if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
			f.Close()
			return files, err
		}
		if err := f.Close(); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}
