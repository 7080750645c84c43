//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sealbuf/sealbuf/internal/handoff"
)

func init() {
	register(command{
		name: "bench",
		args: "[flags]",
		help: "compare handoff modes with a socket copy (-h for flags)",
		run:  runBench,
	})
	children[handoff.Role] = handoff.Child
}

// benchModes are the modes the command measures, in table order. mmap-go
// lives in the bench module only (it would put github.com/edsrzf/mmap-go in
// the library's module graph).
var benchModes = []string{"socket", "seqpacket", "sealed", "sealed-new", "sealed-floor", "sealed-hugetlb", "sealed-thp", "sealed-prefault", "pool", "pool-spin", "pool-floor", "pool-futex-floor", "spin-floor"}

const defaultSizes = "4K,64K,1M,16M,64M"

// defaultRounds is how many slices each measurement is cut into: the
// modes of one size take turns, so a burst of noise from other processes
// hits them alike, and the median slice is reported.
const defaultRounds = 5

type benchConfig struct {
	modes  []string
	sizes  []int64
	per    time.Duration
	rounds int
	pin    string
	// consumers is how many consumer processes each message goes to.
	consumers int
	json      bool
	svg       string
	stderr    io.Writer
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("sizes", defaultSizes, "message sizes, comma-separated (suffixes K, M, G: powers of 1024)")
	per := fs.Duration("time", time.Second, "target time per measurement, split into -rounds interleaved rounds (plus a tenth of it to warm up)")
	rounds := fs.Int("rounds", defaultRounds, "rounds per measurement: the modes of one size take turns, and each reports its median round")
	pin := fs.String("pin", "same", "CPU pinning: same (producer and consumer on one CPU), cross (each on a CPU of its own) or none")
	consumers := fs.Int("consumers", 1, "consumer processes each message goes to: socket copies it to each, the sealed modes send the same buffer to each; a message ends when all have acked (modes that cannot fan out get no row)")
	asJSON := fs.Bool("json", false, `print one JSON object per line: {"mode","size","ns_per_msg","vs_socket","p50_ns","p99_ns"} (p50, p99: each message's round trip)`)
	svg := fs.String("svg", "", "also write a chart (SVG) to this file")
	modes := fs.String("modes", strings.Join(benchModes, ","), "modes to measure, comma-separated (socket is always measured: it is the reference); diagnostics: floor-netpoll (sealed-floor waiting through Go's netpoller), pool-socket (pool with its records over the socket: no pool.WithFutex), pool-netpoll (pool-socket without WithWait), sealed-wait (sealed with it), sealed-paced (sealed-prefault's pacing with FromBytes instead of its harness-only reserve), lib-producer and lib-consumer (one side the library, the other the floor)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sealbuf bench [flags]\n\nEach mode hands messages of each size from this process to a child process and back (one ack per message); every byte is written and checked.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := benchConfig{per: *per, rounds: *rounds, pin: *pin, consumers: *consumers, json: *asJSON, svg: *svg, stderr: stderr}
	var err error
	if cfg.sizes, err = parseSizes(*sizes); err != nil {
		return err
	}
	if cfg.pin != "same" && cfg.pin != "cross" && cfg.pin != "none" {
		return fmt.Errorf("-pin %q: want same, cross or none", cfg.pin)
	}
	if cfg.consumers < 1 {
		return fmt.Errorf("-consumers %d: want at least 1", cfg.consumers)
	}
	if cfg.per <= 0 {
		return fmt.Errorf("-time %v: want a positive duration", cfg.per)
	}
	if cfg.rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", cfg.rounds)
	}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		switch {
		case m == "":
		case m != "mmap-go" && !known(m):
			return fmt.Errorf("-modes: unknown mode %q (known: %s, mmap-go)", m, strings.Join(handoff.Names(), ", "))
		case !slices.Contains(cfg.modes, m):
			cfg.modes = append(cfg.modes, m)
		}
	}
	return bench(stdout, cfg)
}

func known(mode string) bool {
	_, ok := handoff.Lookup(mode)
	return ok
}

// handoffTable measures each mode at each size (producer and consumer in two processes) and prints an aligned table to w.
func handoffTable(w io.Writer, modes []string, sizes []int64, per time.Duration) error {
	return bench(w, benchConfig{modes: modes, sizes: sizes, per: per, rounds: defaultRounds, pin: "same", consumers: 1, stderr: os.Stderr})
}

// benchRow is one measurement, as -json prints it.
type benchRow struct {
	Mode     string  `json:"mode"`
	Size     int64   `json:"size"`
	NsPerMsg float64 `json:"ns_per_msg"`
	VsSocket float64 `json:"vs_socket"`
	// P50Ns and P99Ns: quantiles of each message's round trip (from the
	// fill to the last ack), over every timed message.
	P50Ns float64 `json:"p50_ns"`
	P99Ns float64 `json:"p99_ns"`

	msgs int
	note string
}

func bench(w io.Writer, cfg benchConfig) (err error) {
	// socket is the reference every row is compared with: first, always.
	modes := []string{"socket"}
	for _, m := range cfg.modes {
		switch {
		case m == "socket" || slices.Contains(modes, m):
		case m == "mmap-go":
			fmt.Fprintln(cfg.stderr, "sealbuf bench: mode mmap-go is measured by the bench module only (it keeps github.com/edsrzf/mmap-go out of the library's dependencies): cd bench && go test -run=NONE -bench='Handoff/mmap-go'")
		case !known(m):
			return fmt.Errorf("unknown mode %q (known: %v)", m, handoff.Names())
		default:
			modes = append(modes, m)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opt := handoff.Options{CPU: -1, Consumers: cfg.consumers}
	switch cfg.pin {
	case "same":
		if opt.CPU = handoff.PickCPU(); opt.CPU < 0 {
			return errors.New("-pin same: cannot read this process's CPU mask")
		}
	case "cross":
		cpus := handoff.PickCPUs(2)
		if len(cpus) < 2 {
			return fmt.Errorf("-pin cross: needs two CPUs, this process may run on %d", len(cpus))
		}
		opt.CPU, opt.ConsumerCPUs = cpus[0], cpus[1:]
	}
	hugeOK := map[int64]error{}
	if slices.Contains(modes, "sealed-hugetlb") {
		restore := hugePool(cfg, hugeOK)
		defer restore()
	}
	thpOK := map[int64]error{}
	if slices.Contains(modes, "sealed-thp") {
		restore := thpKnob(cfg, thpOK)
		defer restore()
	}

	t := newBenchTable(w, cfg.json)
	var rows []benchRow
	for _, size := range cfg.sizes {
		var run []handoff.Mode
		for _, name := range modes {
			if name == "sealed-hugetlb" && hugeOK[size] != nil {
				fmt.Fprintf(cfg.stderr, "sealbuf bench: sealed-hugetlb, %s: no row: %v\n", sizeName(size), hugeOK[size])
				continue
			}
			if name == "sealed-thp" && thpOK[size] != nil {
				fmt.Fprintf(cfg.stderr, "sealbuf bench: sealed-thp, %s: no row: %v\n", sizeName(size), thpOK[size])
				continue
			}
			mode, _ := handoff.Lookup(name)
			run = append(run, mode)
		}
		results, err := handoff.Measure(ctx, run, int(size), cfg.per/10, cfg.per, cfg.rounds, opt)
		if err != nil {
			return err
		}
		if err := results[0].Err; err != nil { // socket: no reference, no table
			return err
		}
		socketNs := results[0].NsPerMsg
		for _, r := range results {
			if r.Err != nil {
				fmt.Fprintf(cfg.stderr, "sealbuf bench: %s, %s: no row: %v\n", r.Mode, sizeName(size), r.Err)
				continue
			}
			row := benchRow{Mode: r.Mode, Size: size, NsPerMsg: r.NsPerMsg, VsSocket: socketNs / r.NsPerMsg, P50Ns: r.P50Ns, P99Ns: r.P99Ns, msgs: r.Msgs, note: r.Note}
			rows = append(rows, row)
			if err := t.row(row); err != nil {
				return err
			}
		}
		t.endGroup()
	}
	if cfg.svg != "" {
		if err := writeBenchSVG(cfg.svg, modes, cfg.sizes, rows, cfg); err != nil {
			return err
		}
	}
	return nil
}

// hugePool makes sure the huge page pool can hold the largest huge-page
// message, raising it (as root) when needed; it records per size why
// sealed-hugetlb cannot run.
func hugePool(cfg benchConfig, why map[int64]error) (restore func()) {
	hp := int64(handoff.HugePageSize())
	var largest int64
	for _, size := range cfg.sizes {
		switch {
		case hp == 0:
			why[size] = errors.New("the kernel has no huge pages")
		case size == 0 || size%hp != 0:
			why[size] = fmt.Errorf("%d bytes is not a multiple of the %s huge page size (hugetlbfs sizes are whole pages)", size, sizeName(hp))
		default:
			largest = max(largest, size)
		}
	}
	if largest == 0 {
		return func() {}
	}
	// One message in flight at a time, plus one being built.
	restore, err := handoff.EnsureHugePages(int(2*largest/hp), cfg.stderr)
	if err != nil {
		for _, size := range cfg.sizes {
			if why[size] == nil {
				why[size] = err
			}
		}
	}
	return restore
}

// thpKnob makes sure memfds get shmem transparent huge pages for
// sealed-thp, setting the kernel's knob (as root) for the run when they do
// not; it records per size why sealed-thp cannot run.
func thpKnob(cfg benchConfig, why map[int64]error) (restore func()) {
	pmd := int64(handoff.THPSize())
	var smallest int64
	for _, size := range cfg.sizes {
		switch {
		case pmd == 0:
			why[size] = errors.New("the kernel has no transparent huge pages")
		case size < pmd:
			why[size] = fmt.Errorf("%d bytes is less than one %s transparent huge page", size, sizeName(pmd))
		case smallest == 0:
			smallest = size
		}
	}
	if smallest == 0 {
		return func() {}
	}
	restore, err := handoff.EnsureShmemTHP(int(pmd), cfg.stderr)
	if err != nil {
		for _, size := range cfg.sizes {
			if why[size] == nil {
				why[size] = err
			}
		}
	}
	return restore
}

func parseSizes(s string) ([]int64, error) {
	var sizes []int64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := parseSize(f)
		if err != nil {
			return nil, fmt.Errorf("-sizes: %w", err)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 {
		return nil, errors.New("-sizes: no sizes")
	}
	return sizes, nil
}

func parseSize(s string) (int64, error) {
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	shift := 0
	switch {
	case strings.HasSuffix(num, "K"):
		shift = 10
	case strings.HasSuffix(num, "M"):
		shift = 20
	case strings.HasSuffix(num, "G"):
		shift = 30
	}
	if shift > 0 {
		num = num[:len(num)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)>>shift {
		return 0, fmt.Errorf("bad size %q: want a positive number with an optional K, M or G suffix", s)
	}
	return n << shift, nil
}

// sizeName prints a size the way -sizes takes it: 4K, 64K, 1M…
func sizeName(n int64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// benchTable prints rows as they come: aligned text, or JSON lines.
type benchTable struct {
	w      io.Writer
	json   bool
	header bool
}

func newBenchTable(w io.Writer, asJSON bool) *benchTable { return &benchTable{w: w, json: asJSON} }

const benchRowFormat = "%-5s  %-16s %11s %11s %11s %9s %10s %6s  %s\n"

func (t *benchTable) row(r benchRow) error {
	if t.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(t.w, "%s\n", b)
		return err
	}
	if !t.header {
		t.header = true
		if _, err := fmt.Fprintf(t.w, benchRowFormat, "size", "mode", "time/msg", "p50", "p99", "GB/s", "vs socket", "msgs", "how"); err != nil {
			return err
		}
	}
	gbs := float64(r.Size) / r.NsPerMsg
	_, err := fmt.Fprintf(t.w, benchRowFormat, sizeName(r.Size), r.Mode, fmtNs(r.NsPerMsg), fmtNs(r.P50Ns), fmtNs(r.P99Ns),
		strconv.FormatFloat(gbs, 'f', 2, 64), strconv.FormatFloat(r.VsSocket, 'f', 2, 64)+"x", strconv.Itoa(r.msgs), r.note)
	return err
}

func (t *benchTable) endGroup() {
	if !t.json && t.header {
		fmt.Fprintln(t.w)
	}
}

// fmtNs prints a duration in nanoseconds with about three significant
// digits.
func fmtNs(ns float64) string {
	unit := "ns"
	for _, u := range []struct {
		div  float64
		name string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}} {
		if ns >= u.div {
			ns, unit = ns/u.div, u.name
			break
		}
	}
	prec := 2
	if ns >= 100 {
		prec = 0
	} else if ns >= 10 {
		prec = 1
	}
	return strconv.FormatFloat(ns, 'f', prec, 64) + " " + unit
}
