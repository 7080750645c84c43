// Developer tools for sealbuf, kept out of the library's go.mod so that a
// module importing sealbuf pulls none of them. From the repository root:
//
//	go tool -modfile=tools/go.mod staticcheck ./...
//
// Update here: cd tools && go get -tool honnef.co/go/tools/cmd/staticcheck@latest && go mod tidy
module github.com/sealbuf/sealbuf/tools

go 1.26.0

tool honnef.co/go/tools/cmd/staticcheck

require (
	github.com/BurntSushi/toml v1.4.1-0.20240526193622-a339e1f7089c // indirect
	golang.org/x/exp/typeparams v0.0.0-20231108232855-2478ac86f678 // indirect
	golang.org/x/mod v0.42.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/tools v0.52.0 // indirect
	honnef.co/go/tools v0.7.0 // indirect
)
