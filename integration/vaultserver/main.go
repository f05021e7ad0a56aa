// Command vaultserver builds a real HashiCorp Vault server from source so the
// integration tests run against Vault itself, never a fake of its API.
//
// It lives in its own module so that importing jeton never pulls in Vault.
// Vault 1.21 is BSL-licensed; it is used here only as a test dependency.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
