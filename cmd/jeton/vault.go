package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// runVault prepares a fresh Vault for jeton: the Transit mount, the KEK with
// exportable=false and allow_plaintext_backup=false, the jetond and
// custodian policies and, optionally, jetond's AppRole. It runs with a
// custodian's or administrator's token from the standard VAULT_*
// variables, never with jetond's.
const vaultUsage = `Usage: jeton vault setup [--mount transit] [--key jeton-kek] [--approle --secret-id-file FILE] [--print-policies]

Prepares a fresh Vault for jeton, idempotently: the Transit mount, the KEK
(aes256-gcm96, exportable=false, allow_plaintext_backup=false), the
jeton-jetond and jeton-custodian policies and, with --approle, jetond's
AppRole. Run it with a custodian's or administrator's token: VAULT_ADDR,
VAULT_TOKEN, VAULT_CACERT and the other standard VAULT_* variables apply.
The AppRole secret_id is written to a file, never printed.

Exit status: 0 done, 2 usage error, 3 Vault refused or failed.

Flags:
`

func runVault(args []string, e *env) int {
	if helpArg(args) {
		fmt.Fprint(e.stdout, vaultUsage)
		return exitOK
	}
	if len(args) == 0 || args[0] != "setup" {
		e.errorf("usage: jeton vault setup [--mount transit] [--key jeton-kek] [--approle --secret-id-file FILE] [--print-policies]")
		return exitUsage
	}
	fs := flag.NewFlagSet("vault setup", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), vaultUsage); fs.PrintDefaults() }
	mount := fs.String("mount", vaultkeys.DefaultMount, "Transit mount path")
	key := fs.String("key", vaultkeys.DefaultKey, "KEK name")
	appRole := fs.Bool("approle", false, "enable AppRole and create jetond's role")
	secretFile := fs.String("secret-id-file", "", "with --approle: write jetond's secret_id to this `file` (mode 0600)")
	printPolicies := fs.Bool("print-policies", false, "print the policies' HCL and exit, without contacting Vault")
	timeout := fs.Duration("timeout", time.Minute, "deadline for the whole setup")
	if rest, code, ok := parse(fs, args[1:], e); !ok {
		return code
	} else if len(rest) > 0 {
		e.errorf("vault setup: takes no arguments")
		return exitUsage
	}
	if *printPolicies {
		pols := vaultkeys.Policies(*mount, *key)
		names := make([]string, 0, len(pols))
		for n := range pols {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(e.stdout, "# policy %s\n%s\n", n, pols[n])
		}
		return exitOK
	}
	if *appRole && *secretFile == "" {
		e.errorf("--approle needs --secret-id-file: the secret_id is never printed")
		return exitUsage
	}
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		e.errorf("vault: %v", cfg.Error)
		return exitUsage
	}
	vc, err := vault.NewClient(cfg)
	if err != nil {
		e.errorf("vault: %v", err)
		return exitUsage
	}
	if vc.Token() == "" {
		e.errorf("set VAULT_TOKEN to a custodian's or administrator's token")
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := vaultkeys.Setup(ctx, vc, vaultkeys.SetupConfig{Mount: *mount, Key: *key, AppRole: *appRole})
	if err != nil {
		e.errorf("%v", err)
		return exitRPC
	}
	fmt.Fprintf(e.stdout, "transit mount %s (created: %v)\nKEK %s (created: %v; exportable=false, allow_plaintext_backup=false)\npolicies: %v\n",
		res.Mount, res.MountCreated, res.Key, res.KeyCreated, res.Policies)
	if a := res.Audit; a != nil {
		fmt.Fprintf(e.stdout, "audit signing key %s/%s (created: %v; ed25519, exportable=false)\naudit checkpoints kv-v2 mount %s (created: %v; cas_required=true)\n",
			res.Mount, a.SigningKey, a.KeyCreated, a.KVMount, a.MountCreated)
	}
	if *appRole {
		if err := os.WriteFile(*secretFile, []byte(res.SecretID+"\n"), 0o600); err != nil {
			e.errorf("writing the secret_id: %v", err)
			return exitRPC
		}
		fmt.Fprintf(e.stdout, "approle role_id: %s\napprole secret_id written to %s\n", res.RoleID, *secretFile)
	}
	return exitOK
}
