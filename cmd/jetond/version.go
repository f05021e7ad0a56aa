package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// printBuildInfo prints jetond's module version, Go version and VCS
// revision, as runtime/debug.ReadBuildInfo reports them.
func printBuildInfo(w io.Writer) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(w, "jetond (no build information)")
		return
	}
	fmt.Fprintf(w, "jetond %s\ngo %s\n", bi.Main.Version, bi.GoVersion)
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH":
			fmt.Fprintf(w, "%s %s\n", s.Key, s.Value)
		}
	}
}
