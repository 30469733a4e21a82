// select: the Go side of weft's benchmarks/select.cpp. One consumer goroutine
// takes n ints from 4 buffered channels (capacity 1024 each) with a select
// over the 4 receives; each channel is fed by its own producer goroutine,
// n/4 ints each. One op = one select that received a value; the sum is
// checked (exit status 1 when wrong).
//
// It lives in weft's repository because the shared peers kit (../shared/peers)
// has no select workload. Self-contained (standard library only) and prints
// the kit's RESULT line, so scripts/bench.sh can run it next to weft's:
//
//	RESULT name=select impl=go workers=<w> n=<n> ns_per_op=<x> total_ms=<y> rss_kb=<z> producers=4 cap=1024
//
// Usage: select <n=10000000> <workers=2>   (workers = GOMAXPROCS)
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

const P, Cap = 4, 1024

// intArg is os.Args[i] as an int, def when absent; exits on garbage.
func intArg(i, def int) int {
	if len(os.Args) <= i {
		return def
	}
	v, err := strconv.Atoi(os.Args[i])
	if err != nil || v < 0 {
		fmt.Fprintf(os.Stderr, "select: bad argument %d: %q (usage: select <n> <workers>)\n", i, os.Args[i])
		os.Exit(2)
	}
	return v
}

// peakRSSKB is this process's peak resident set size in KiB (getrusage).
func peakRSSKB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Maxrss
}

func main() {
	n := intArg(1, 10000000) / P * P
	w := intArg(2, 2)
	runtime.GOMAXPROCS(w)
	var cs [P]chan int
	for p := range cs {
		cs[p] = make(chan int, Cap)
	}
	t0 := time.Now()
	for p := 0; p < P; p++ {
		go func(p int) {
			for i := p * (n / P); i < (p+1)*(n/P); i++ {
				cs[p] <- i
			}
		}(p)
	}
	sum := 0
	for k := 0; k < n; k++ {
		select {
		case v := <-cs[0]:
			sum += v
		case v := <-cs[1]:
			sum += v
		case v := <-cs[2]:
			sum += v
		case v := <-cs[3]:
			sum += v
		}
	}
	el := time.Since(t0)
	if want := n * (n - 1) / 2; sum != want {
		fmt.Fprintf(os.Stderr, "select: WRONG RESULT: sum %d, want %d\n", sum, want)
		os.Exit(1)
	}
	nsPerOp := 0.0
	if n > 0 {
		nsPerOp = float64(el.Nanoseconds()) / float64(n)
	}
	fmt.Printf("RESULT name=select impl=go workers=%d n=%d ns_per_op=%.1f total_ms=%.1f rss_kb=%d producers=%d cap=%d\n",
		w, n, nsPerOp, float64(el.Nanoseconds())/1e6, peakRSSKB(), P, Cap)
}
