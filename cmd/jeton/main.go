// Command jeton is the command line for jeton's TTP operators, state
// systems and key custodians: it tokenizes and reveals values over mutual
// TLS. Run "jeton help" for the commands.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
