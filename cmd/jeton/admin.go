package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/jeton-dev/jeton/client"
)

const adminUsage = `Usage: jeton admin <subcommand> [flags] [arguments]

Key custodian operations, on the trusted listener. Every call is audited;
--reason goes to the audit log as the case reference: give a ticket or
case number, never personal data. Destructive subcommands require
--confirm with the exact text shown.

Subcommands:
  erase-tokens       --reason R [TOKEN...]      erase records by token (stdin if none); prints the count
  erase-subject      --tenant T --subject S --reason R
                                                erase a data subject's records; prints the count
  purge-tenant       --tenant T --confirm T --reason R
                                                crypto-shred and delete a whole tenant; prints the count
  rotate             --tenant T                 start a new key generation; prints its number
  destroy-generation --tenant T --generation N --confirm "destroy T generation N" --reason R
                                                crypto-shred an old generation
  rewrap                                        rewrap every data key under the newest KEK;
                                                prints "DONE/TOTAL" lines as it goes
  stats              [--json]                   record counts per tenant and generation
  reinstate          --identity ID --reason R   lift a suspension
  mint-canary        --tenant T --class C [--suspend]
                                                mint a canary token; prints it

Exit status: 0 done, 2 usage error, 3 the call failed.
`

// adminCommand is one admin subcommand: its flags, and what it does with a
// client once they are checked. check returns a usage error.
type adminCommand struct {
	flags func(fs *flag.FlagSet) (check func(args []string) error, run func(ctx context.Context, cl *client.Client, args []string, e *env) error)
}

var adminCommands = map[string]adminCommand{
	"erase-tokens":       {adminEraseTokens},
	"erase-subject":      {adminEraseSubject},
	"purge-tenant":       {adminPurgeTenant},
	"rotate":             {adminRotate},
	"destroy-generation": {adminDestroyGeneration},
	"rewrap":             {adminRewrap},
	"stats":              {adminStats},
	"reinstate":          {adminReinstate},
	"mint-canary":        {adminMintCanary},
}

func runAdmin(args []string, e *env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, adminUsage)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, adminUsage)
		return exitOK
	}
	name := args[0]
	sub, ok := adminCommands[name]
	if !ok {
		e.errorf("admin: unknown subcommand %q", name)
		fmt.Fprint(e.stderr, adminUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("admin "+name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), adminUsage+"\nFlags:\n"); fs.PrintDefaults() }
	var c conn
	c.register(fs, e.getenv)
	check, do := sub.flags(fs)
	rest, code, ok := parse(fs, args[1:], e)
	if !ok {
		return code
	}
	if err := check(rest); err != nil {
		e.errorf("admin %s: %v", name, err)
		return exitUsage
	}
	cl, err := c.dial()
	if err != nil {
		e.errorf("admin %s: %v", name, err)
		return exitUsage
	}
	defer cl.Close()
	if err := do(context.Background(), cl, rest, e); err != nil {
		return callFailed(e, "admin "+name, err)
	}
	return exitOK
}

// required returns an error naming the first empty flag.
func required(flags ...struct{ name, val string }) error {
	for _, f := range flags {
		if f.val == "" {
			return fmt.Errorf("--%s is required", f.name)
		}
	}
	return nil
}

type flagVal = struct{ name, val string }

func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %d; this subcommand takes flags only", 1)
	}
	return nil
}

func adminEraseTokens(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	reason := fs.String("reason", "", "why, e.g. a ticket number (required; audited)")
	return func([]string) error { return required(flagVal{"reason", *reason}) },
		func(ctx context.Context, cl *client.Client, args []string, e *env) error {
			tokens, _, err := inputs(args, e)
			if err != nil {
				return err
			}
			tokens = slices.DeleteFunc(tokens, func(s string) bool { return strings.TrimSpace(s) == "" })
			n, err := cl.EraseTokens(ctx, tokens, *reason)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, n)
			return nil
		}
}

func adminEraseSubject(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	tenant := fs.String("tenant", "", "tenant of the subject (required)")
	subject := fs.String("subject", "", "data subject id (required)")
	reason := fs.String("reason", "", "why, e.g. a ticket number (required; audited)")
	return func(args []string) error {
			if err := required(flagVal{"tenant", *tenant}, flagVal{"subject", *subject}, flagVal{"reason", *reason}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			n, err := cl.EraseSubject(ctx, *tenant, *subject, *reason)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, n)
			return nil
		}
}

func adminPurgeTenant(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	tenant := fs.String("tenant", "", "tenant to purge (required)")
	confirm := fs.String("confirm", "", "the tenant name again (required)")
	reason := fs.String("reason", "", "why, e.g. a ticket number (required; audited)")
	return func(args []string) error {
			if err := required(flagVal{"tenant", *tenant}, flagVal{"reason", *reason}); err != nil {
				return err
			}
			if *confirm != *tenant {
				return fmt.Errorf("--confirm must repeat the tenant name exactly")
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			n, err := cl.PurgeTenant(ctx, *tenant, *confirm, *reason)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, n)
			return nil
		}
}

func adminRotate(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	tenant := fs.String("tenant", "", "tenant whose generation to rotate (required)")
	return func(args []string) error {
			if err := required(flagVal{"tenant", *tenant}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			g, err := cl.RotateGeneration(ctx, *tenant)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, g)
			return nil
		}
}

func adminDestroyGeneration(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	tenant := fs.String("tenant", "", "tenant (required)")
	gen := fs.String("generation", "", "generation number to destroy (required)")
	confirm := fs.String("confirm", "", `"destroy <tenant> generation <n>" (required)`)
	reason := fs.String("reason", "", "why, e.g. a ticket number (required; audited)")
	var n uint32
	return func(args []string) error {
			if err := required(flagVal{"tenant", *tenant}, flagVal{"generation", *gen}, flagVal{"reason", *reason}); err != nil {
				return err
			}
			g, err := strconv.ParseUint(*gen, 10, 32)
			if err != nil || g == 0 {
				return fmt.Errorf("--generation must be a positive number")
			}
			n = uint32(g)
			if want := client.DestroyConfirmation(*tenant, n); *confirm != want {
				return fmt.Errorf("--confirm must read exactly %q", want)
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			if err := cl.DestroyGeneration(ctx, *tenant, n, *confirm, *reason); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "destroyed %s generation %d\n", *tenant, n)
			return nil
		}
}

func adminRewrap(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	return noArgs, func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
		_, _, err := cl.Rewrap(ctx, func(done, total int64) { fmt.Fprintf(e.stdout, "%d/%d\n", done, total) })
		return err
	}
}

func adminStats(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	asJSON := fs.Bool("json", false, "print the whole report as one JSON object")
	return noArgs, func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
		st, err := cl.Stats(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(st)
		}
		// One fact per line, "key value" pairs, for grep and awk.
		for _, t := range st.Tenants {
			if len(t.Generations) == 0 {
				fmt.Fprintf(e.stdout, "tenant %s generations 0\n", t.Tenant)
			}
			for _, g := range t.Generations {
				line := fmt.Sprintf("tenant %s generation %d records %d", t.Tenant, g.Generation, g.Records)
				if g.Current {
					line += " current"
				}
				fmt.Fprintln(e.stdout, line)
			}
			for _, class := range slices.Sorted(maps.Keys(t.RecordsByClass)) {
				fmt.Fprintf(e.stdout, "tenant %s class %s records %d\n", t.Tenant, class, t.RecordsByClass[class])
			}
		}
		for _, id := range st.SuspendedIdentities {
			fmt.Fprintf(e.stdout, "suspended %s\n", id)
		}
		for _, u := range st.Budgets {
			line := fmt.Sprintf("budget %s distinct %d", u.Identity, u.Distinct)
			if u.DistinctLimit > 0 {
				line += fmt.Sprintf(" of %d", u.DistinctLimit)
			}
			line += fmt.Sprintf(" refusals %d", u.Refusals)
			if u.Suspended {
				line += " suspended"
			}
			fmt.Fprintln(e.stdout, line)
		}
		return nil
	}
}

func adminReinstate(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	identity := fs.String("identity", "", "identity to reinstate, as in the policy (required)")
	reason := fs.String("reason", "", "why, e.g. a ticket number (required; audited)")
	return func(args []string) error {
			if err := required(flagVal{"identity", *identity}, flagVal{"reason", *reason}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			if err := cl.ReinstateIdentity(ctx, *identity, *reason); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "reinstated %s\n", *identity)
			return nil
		}
}

func adminMintCanary(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	tenant := fs.String("tenant", "", "tenant (required)")
	class := fs.String("class", "", "field class (required)")
	suspend := fs.Bool("suspend", false, "revealing the canary also suspends the revealing identity")
	return func(args []string) error {
			if err := required(flagVal{"tenant", *tenant}, flagVal{"class", *class}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			tok, err := cl.MintCanary(ctx, *tenant, *class, *suspend)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, tok)
			return nil
		}
}
