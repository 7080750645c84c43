module github.com/sealbuf/sealbuf/bench

go 1.26.0

require (
	github.com/edsrzf/mmap-go v1.2.0
	github.com/sealbuf/sealbuf v0.0.0-00010101000000-000000000000
	golang.org/x/sys v0.49.0
)

replace github.com/sealbuf/sealbuf => ../
