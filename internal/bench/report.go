package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// report holds every figure of a run; it is printed as text and optionally as JSON.
type report struct {
	Started      time.Time     `json:"started"`
	Finished     time.Time     `json:"finished"`
	Seed         int64         `json:"seed"`
	N            int           `json:"n"`
	Warmup       int           `json:"warmup"`
	Machine      machine       `json:"machine"`
	Tools        tools         `json:"tools"`
	Tree         treeFigures   `json:"tree"`
	Measurements []measurement `json:"measurements"`
	Bakery       bakeryFigures `json:"bakery"`
	BakeryZstd   bakeryFigures `json:"bakery_zstd"`
	Crane        craneFigures  `json:"crane"`
	Floor        floorFigures  `json:"floor"`
	Checks       []check       `json:"checks"`
	Commands     []string      `json:"commands"`
}

type tools struct {
	Bakery       string `json:"bakery"`
	BakeryRev    string `json:"bakery_rev,omitempty"`
	Crane        string `json:"crane"`
	CraneVersion string `json:"crane_version"`
}

type treeFigures struct {
	treeStamp
	Reused bool `json:"reused"`
}

// measurement is one series summarized; durations are in seconds.
type measurement struct {
	Key        string    `json:"key"`
	Label      string    `json:"label"`
	MedianS    float64   `json:"median_s"`
	MinS       float64   `json:"min_s"`
	MaxS       float64   `json:"max_s"`
	SamplesS   []float64 `json:"samples_s"`
	CPUMedianS float64   `json:"cpu_median_s,omitempty"` // user+sys, external processes only
	PeakRSSKiB int64     `json:"peak_rss_kib,omitempty"` // max over the warm-up runs, which measure it (see command.NoRSS)
}

type bakeryFigures struct {
	Recipe          string   `json:"recipe"`
	Version         string   `json:"version"`
	BakeKey         string   `json:"bake_key"`
	Ref             string   `json:"ref"`
	Digest          string   `json:"digest"`
	ArtifactSize    int64    `json:"artifact_size"` // the "size" field of the JSON artifact
	LayerBytes      int64    `json:"layer_bytes"`   // compressed layer blobs in the layout
	LayerMediaTypes []string `json:"layer_media_types"`
	HomeBytes       int64    `json:"home_bytes"` // everything in BAKERY_HOME after one full bake
	DigestStable    bool     `json:"digest_stable"`
	Verified        string   `json:"verified"`
}

type craneFigures struct {
	LayerBytes  int64  `json:"layer_bytes"`
	OutTarBytes int64  `json:"out_tar_bytes"`
	Verified    string `json:"verified"`
}

// check is one target: Value Op Target, e.g. 0.42 <= 0.5.
type check struct {
	Name   string  `json:"name"`
	Detail string  `json:"detail"`
	Value  float64 `json:"value"`
	Op     string  `json:"op"`
	Target float64 `json:"target"`
	Unit   string  `json:"unit"`
	Pass   bool    `json:"pass"`
}

func (r *report) addMeasurement(s *series) {
	lo, hi := s.minMax()
	m := measurement{
		Key: s.Key, Label: s.Label,
		MedianS: s.median().Seconds(), MinS: lo.Seconds(), MaxS: hi.Seconds(),
		CPUMedianS: s.medianCPU().Seconds(), PeakRSSKiB: s.peakRSSKiB(),
	}
	for _, x := range s.Samples {
		m.SamplesS = append(m.SamplesS, x.Wall.Seconds())
	}
	r.Measurements = append(r.Measurements, m)
}

// evaluate computes the ratios and marks each target met or missed.
func (r *report) evaluate(all map[string]*series) {
	med := func(k string) float64 { return all[k].median().Seconds() }
	add := func(name, detail string, value float64, op string, target float64, unit string) {
		pass := value <= target
		if op == "<" {
			pass = value < target
		}
		r.Checks = append(r.Checks, check{Name: name, Detail: detail, Value: value, Op: op, Target: target, Unit: unit, Pass: pass})
	}
	add("bakery full / crane append",
		fmt.Sprintf("%s / %s", fmtDur(med(mFull)), fmtDur(med(mCrane))),
		med(mFull)/med(mCrane), "<=", 0.35, "x")
	add("bakery full zstd / crane append",
		fmt.Sprintf("%s / %s", fmtDur(med(mZstd)), fmtDur(med(mCrane))),
		med(mZstd)/med(mCrane), "<=", 0.2, "x")
	add("bakery full, sbom = false / crane append",
		fmt.Sprintf("%s / %s", fmtDur(med(mFullNoSBOM)), fmtDur(med(mCrane))),
		med(mFullNoSBOM)/med(mCrane), "<=", 0.35, "x")
	add("bakery full zstd, sbom = false / crane append",
		fmt.Sprintf("%s / %s", fmtDur(med(mZstdNoSBOM)), fmtDur(med(mCrane))),
		med(mZstdNoSBOM)/med(mCrane), "<=", 0.2, "x")
	add("bakery no-op / sha256sum",
		fmt.Sprintf("%s / %s", fmtDur(med(mNoop)), fmtDur(med(mSHA))),
		med(mNoop)/med(mSHA), "<=", 1.5, "x")
	add("layer size bakery / crane",
		fmt.Sprintf("%s / %s", fmtBytes(r.Bakery.LayerBytes), fmtBytes(r.Crane.LayerBytes)),
		float64(r.Bakery.LayerBytes)/float64(r.Crane.LayerBytes), "<=", 1.05, "x")
	add("layer size bakery zstd / crane",
		fmt.Sprintf("%s / %s", fmtBytes(r.BakeryZstd.LayerBytes), fmtBytes(r.Crane.LayerBytes)),
		float64(r.BakeryZstd.LayerBytes)/float64(r.Crane.LayerBytes), "<=", 1.05, "x")
	add("folder bake --parallel 4 / --parallel 1",
		fmt.Sprintf("%s / %s, six linked recipes, %d CPUs", fmtDur(med(mFolder4)), fmtDur(med(mFolder1)), r.Machine.NumCPU),
		// Each container bake already compresses on every core, so on
		// two the gain of baking recipes at once is bounded: the goal is
		// that it never costs time (the issue names no figure).
		med(mFolder4)/med(mFolder1), "<", 1.0, "x")
	add("bakery peak RSS, full bake",
		"warm-up runs, gzip and zstd",
		float64(max(all[mFull].peakRSSKiB(), all[mZstd].peakRSSKiB(), all[mFullNoSBOM].peakRSSKiB(), all[mZstdNoSBOM].peakRSSKiB()))/1024, "<", rssGoal/1024, "MiB")
}

func (r *report) writeText(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "bakery bench — %s, seed %d, median of %d timed runs after %d warm-up run(s)\n",
		r.Started.Format(time.RFC3339), r.Seed, r.N, r.Warmup)
	env := "GOMAXPROCS unset in the environment, so bakery and crane default to NumCPU too"
	if m.GOMAXPROCSEnv != "" {
		env = "GOMAXPROCS=" + m.GOMAXPROCSEnv + " in the environment, inherited by bakery and crane"
	}
	fmt.Fprintf(w, "machine:  %s/%s, %s (sha_ni: %v), %s\n", m.GOOS, m.GOARCH, orUnknown(m.CPU), m.SHANI, m.GoVersion)
	fmt.Fprintf(w, "cpus:     nproc %s, NumCPU %d, GOMAXPROCS %d (%s)\n", orUnknown(m.Nproc), m.NumCPU, m.GOMAXPROCS, env)
	if m.GODEBUG != "" {
		fmt.Fprintf(w, "godebug:  GODEBUG=%s in the environment, inherited by bakery, crane and the floor's timings\n", m.GODEBUG)
	}
	fmt.Fprintf(w, "load avg: %s at start, %s at end (other work on the machine skews every tool alike; runs are interleaved)\n",
		orUnknown(m.LoadAvgStart), orUnknown(m.LoadAvgEnd))
	reused := "generated this run"
	if r.Tree.Reused {
		reused = "reused from the workdir"
	}
	fmt.Fprintf(w, "tree:     %d files, %s (%d × %s random + %d × %s text, text gzip -6 ratio %.1fx), %s; tree.tar %s\n",
		r.Tree.Files, fmtBytes(r.Tree.Bytes), blobCount, fmtBytes(blobSize), textCount, fmtBytes(textSize), r.Tree.TextGzipRatio, reused, fmtBytes(r.Tree.TarBytes))
	rev := ""
	if r.Tools.BakeryRev != "" {
		rev = " (built from " + r.Tools.BakeryRev + ")"
	}
	fmt.Fprintf(w, "bakery:   %s%s\n", r.Tools.Bakery, rev)
	fmt.Fprintf(w, "crane:    %s %s (go-containerregistry version required by go.mod)\n\n", r.Tools.Crane, r.Tools.CraneVersion)

	fmt.Fprintf(w, "%-34s %9s %9s %9s %9s %10s\n", "wall time", "median", "min", "max", "user+sys", "peak RSS")
	for _, x := range r.Measurements {
		cpu, rss := "-", "-"
		if x.CPUMedianS > 0 {
			cpu = fmtDur(x.CPUMedianS)
		}
		if x.PeakRSSKiB > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(x.PeakRSSKiB)/1024)
		}
		fmt.Fprintf(w, "%-34s %9s %9s %9s %9s %10s\n", x.Label, fmtDur(x.MedianS), fmtDur(x.MinS), fmtDur(x.MaxS), cpu, rss)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\t\tgoal\tresult")
	for _, c := range r.Checks {
		result := "PASS"
		if !c.Pass {
			result = "MISS"
		}
		fmt.Fprintf(tw, "%s\t%s\t(%s)\t%s %s\t%s\n", c.Name, fmtValue(c.Value, c.Unit), c.Detail, c.Op, fmtValue(c.Target, c.Unit), result)
	}
	tw.Flush()
	fmt.Fprintf(w, "(info: by median user+sys CPU instead of wall time, bakery full / crane = %.2fx, zstd %.2fx; sbom = false %.2fx, zstd %.2fx; bakery no-op / sha256sum = %.2fx)\n",
		r.cpuRatio(mFull, mCrane), r.cpuRatio(mZstd, mCrane), r.cpuRatio(mFullNoSBOM, mCrane), r.cpuRatio(mZstdNoSBOM, mCrane), r.cpuRatio(mNoop, mSHA))
	fmt.Fprintf(w, "(info: CPU %s, sha_ni %v: sha256 runs twice in bakery (diffID, digest; the bake key hashes inputs with BLAKE3) as in crane)\n",
		orUnknown(m.CPU), m.SHANI)
	r.writeFloor(w)
	fmt.Fprintln(w)

	for _, b := range []bakeryFigures{r.Bakery, r.BakeryZstd} {
		stable := "yes"
		if !b.DigestStable {
			stable = fmt.Sprintf("NO: the %d fresh bakes produced different digests", r.N+r.Warmup)
		}
		fmt.Fprintf(w, "bakery image:  %s %s, layers %s, artifact size field %d B, BAKERY_HOME after one bake %s\n",
			b.Ref, b.Digest, strings.Join(b.LayerMediaTypes, ", "), b.ArtifactSize, fmtBytes(b.HomeBytes))
		fmt.Fprintf(w, "reproducible:  same digest from every fresh BAKERY_HOME this run: %s\n", stable)
		fmt.Fprintf(w, "bakery layer:  %s\n", b.Verified)
	}
	fmt.Fprintf(w, "crane layer:   %s (out.tar %s)\n", r.Crane.Verified, fmtBytes(r.Crane.OutTarBytes))
	fmt.Fprintln(w, "commands (run from the workdir):")
	for _, c := range r.Commands {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintln(w, "notes: crane's tar creation is not timed; every timed run starts after sync(2) with the inputs in the page cache;")
	fmt.Fprintln(w, "       each full bake gets an empty BAKERY_HOME and XDG_CACHE_HOME; the Go sha256 line is for reference only;")
	fmt.Fprintln(w, "       peak RSS is measured in the warm-up runs (polling /proc every 5 ms), never in the timed ones.")
}

// writeFloor writes the floor (see floorFigures) and how the zstd,
// sbom = false bake and crane compare with it.
func (r *report) writeFloor(w io.Writer) {
	f := r.Floor
	if f.FloorS == 0 {
		return
	}
	bake, crane := r.find(mZstdNoSBOM).MedianS, r.find(mCrane).MedianS
	fmt.Fprintf(w, "(floor: what a zstd, sbom = false bake cannot leave out, each part alone in one goroutine: reading and BLAKE3 of the inputs %s,\n",
		fmtDur(f.ReadBLAKE3S))
	fmt.Fprintf(w, "        zstd at its fastest of the tar %s, sha256 of the tar %s and of the layer %s; spread over %d CPUs %s, plus a process start %s:\n",
		fmtDur(f.ZstdS), fmtDur(f.SHA256TarS), fmtDur(f.SHA256LayerS), f.CPUs,
		fmtDur(f.spread()), fmtDur(f.StartS))
	fmt.Fprintf(w, "        %s = %.2fx crane; the bake takes %.2fx this floor, which leaves out writing the layer and listing the inputs)\n",
		fmtDur(f.FloorS), ratio(f.FloorS, crane), ratio(bake, f.FloorS))
}

// ratio is a / b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// cpuRatio is the ratio of the median user+sys CPU times of two measurements.
func (r *report) cpuRatio(a, b string) float64 {
	return ratio(r.find(a).CPUMedianS, r.find(b).CPUMedianS)
}

// find returns the measurement with key, or a zero one.
func (r *report) find(key string) measurement {
	for _, m := range r.Measurements {
		if m.Key == key {
			return m
		}
	}
	return measurement{}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func fmtDur(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	default:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func fmtValue(v float64, unit string) string {
	if unit == "x" {
		return fmt.Sprintf("%.2fx", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}
