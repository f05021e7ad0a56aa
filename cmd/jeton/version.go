package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// runVersion prints the build information the Go toolchain recorded.
func runVersion(args []string, e *env) int {
	if helpArg(args) {
		fmt.Fprint(e.stdout, "Usage: jeton version\n\nPrints jeton's module version, the Go version it was built with, and the\nsource revision and time it was built from, as the Go toolchain recorded them.\n")
		return exitOK
	}
	if len(args) > 0 {
		e.errorf("version: takes no arguments")
		return exitUsage
	}
	printBuildInfo(e.stdout, "jeton")
	return exitOK
}

// printBuildInfo prints name's module version, Go version and VCS
// revision, as runtime/debug.ReadBuildInfo reports them.
func printBuildInfo(w io.Writer, name string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(w, "%s (no build information)\n", name)
		return
	}
	fmt.Fprintf(w, "%s %s\n", name, bi.Main.Version)
	fmt.Fprintf(w, "go %s\n", bi.GoVersion)
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH":
			fmt.Fprintf(w, "%s %s\n", s.Key, s.Value)
		}
	}
}
