module github.com/sealbuf/sealbuf/bench

go 1.26.0

require (
	github.com/edsrzf/mmap-go v1.2.0
	github.com/sealbuf/sealbuf v0.0.0-00010101000000-000000000000
	golang.org/x/sys v0.49.0
)

require (
	github.com/aclements/go-moremath v0.0.0-20210112150236-f10218a38794 // indirect
	golang.org/x/perf v0.0.0-20260908200009-22c9c6c9d4da // indirect
)

replace github.com/sealbuf/sealbuf => ../

tool golang.org/x/perf/cmd/benchstat
