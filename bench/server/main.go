// Command server benchmarks mcc server through its HTTP API on loopback,
// against a real database, and prints the figures the README quotes:
//
//	go run ./bench/server                 # every benchmark
//	go run ./bench/server -run issue      # one of: issue, enroll, certs, ingest, query
//
// Each benchmark starts its own server on a fresh SQLite data directory
// (or -database postgres://...), fills it, measures and prints one block.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
)

// options are the flags every benchmark reads.
type options struct {
	Database string // "" = SQLite in a temporary data directory
	Quick    bool   // smaller sizes, for a smoke run in tests
}

// benchmark is one registered benchmark (see issue.go, certs.go, events.go).
type benchmark struct {
	name, what string
	run        func(ctx context.Context, o options) error
}

var benchmarks = map[string]benchmark{}

func register(b benchmark) { benchmarks[b.name] = b }

func main() {
	var o options
	run := flag.String("run", "", "comma-separated benchmarks to run (default all): "+names())
	flag.StringVar(&o.Database, "database", "", "PostgreSQL URL to benchmark instead of SQLite")
	flag.BoolVar(&o.Quick, "quick", false, "small sizes (a smoke run, not a measurement)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench/server: -cpuprofile: %v\n", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	selected := strings.Split(*run, ",")
	if *run == "" {
		selected = strings.Split(names(), ",")
	}
	for _, n := range selected {
		b, ok := benchmarks[n]
		if !ok {
			fmt.Fprintf(os.Stderr, "bench/server: unknown benchmark %q (want %s)\n", n, names())
			os.Exit(2)
		}
		fmt.Printf("== %s: %s\n", b.name, b.what)
		if err := b.run(context.Background(), o); err != nil {
			pprof.StopCPUProfile()
			fmt.Fprintf(os.Stderr, "bench/server: %s: %v\n", n, err)
			os.Exit(1)
		}
	}
}

func names() string {
	var out []string
	for n := range benchmarks {
		out = append(out, n)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
