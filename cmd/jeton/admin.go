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
	"time"

	"github.com/jeton-dev/jeton/client"
)

const adminUsage = `Usage: jeton admin <subcommand> [flags] [arguments]

Key custodian operations, on the trusted listener. Every call is audited;
--reason goes to the audit log as the case reference: give a ticket or
case number, never personal data. Destructive subcommands require
--confirm with the exact text shown.

Dual control: purge-tenant and destroy-generation only make a request.
It takes effect when enough other custodians of the tenant (the policy's
dual_control, 2 in all by default) run "approve" on it; the last approval
carries it out. Requests expire (24h by default); "pending" lists them.

Subcommands:
  erase-tokens       --reason R [TOKEN...]      erase records by token (stdin if none); prints the count
  erase-subject      --tenant T --subject S --reason R
                                                erase a data subject's records; prints the count
  purge-tenant       --tenant T --confirm T --reason R
                                                request that a whole tenant be crypto-shredded
                                                and deleted; prints the request
  rotate             --tenant T                 start a new key generation; prints its number
  destroy-generation --tenant T --generation N --confirm "destroy T generation N" --reason R
                                                request that an old generation be crypto-shredded;
                                                prints the request
  pending            [--json]                   the pending requests of your tenants
  approve            --id ID --reason R         approve another custodian's request; the last
                                                approval needed carries it out
  cancel             --id ID --reason R         withdraw or reject a pending request
  sweep              --tenant T                 delete the records of destroyed generations;
                                                prints "scanned N deleted M" lines as it goes
  rewrap                                        rewrap every data key under the newest KEK;
                                                prints "DONE/TOTAL" lines as it goes
  stats              [--json]                   record counts per tenant and generation
  reinstate          --identity ID --reason R   lift a suspension
  mint-canary        --tenant T --class C [--suspend] [--subject S]
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
	"pending":            {adminPending},
	"approve":            {adminApprove},
	"cancel":             {adminCancel},
	"sweep":              {adminSweep},
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
	tenant := fs.String("tenant", "", "erase in this one of your tenants only; needed for a format-preserving token held by several of them")
	return func([]string) error { return required(flagVal{"reason", *reason}) },
		func(ctx context.Context, cl *client.Client, args []string, e *env) error {
			tokens, _, err := inputs(args, e)
			if err != nil {
				return err
			}
			tokens = slices.DeleteFunc(tokens, func(s string) bool { return strings.TrimSpace(s) == "" })
			n, err := cl.Custodian.InTenant(*tenant).EraseTokens(ctx, tokens, *reason)
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
			r, err := cl.PurgeTenant(ctx, *tenant, *confirm, *reason)
			if err != nil {
				return err
			}
			if r.Done {
				fmt.Fprintf(e.stdout, "purged %s: %d records erased\n", *tenant, r.Erased)
				return nil
			}
			printRequested(e, r)
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
			r, err := cl.DestroyGeneration(ctx, *tenant, n, *confirm, *reason)
			if err != nil {
				return err
			}
			if r.Done {
				fmt.Fprintf(e.stdout, "destroyed %s generation %d\n", *tenant, n)
				return nil
			}
			printRequested(e, r)
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
				if g.Destroyed {
					line += " destroyed"
					if !g.DestroyedAt.IsZero() {
						line += " " + g.DestroyedAt.UTC().Format(time.RFC3339)
					}
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
	subject := fs.String("subject", "", "data-subject id to index the canary under, as Tokenize does (default: a fresh random one); mint a fake person's canaries under one id")
	return func(args []string) error {
			if err := required(flagVal{"tenant", *tenant}, flagVal{"class", *class}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			tok, err := cl.MintCanary(ctx, *tenant, *class, *suspend, client.CanarySubject(*subject))
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, tok)
			return nil
		}
}

// printRequested tells the requester what happens next.
func printRequested(e *env, r *client.PendingRequest) {
	fmt.Fprintf(e.stdout, "requested %s; request %s needs %d custodians in all (%d so far), expires %s\n",
		describe(r), r.ID, r.ApprovalsRequired, len(r.ApprovedBy), r.Expires.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "another custodian of %s approves it with: jeton admin approve --id %s --reason <ticket>\n", r.Tenant, r.ID)
}

// describe names what a request does, for humans.
func describe(r *client.PendingRequest) string {
	if r.Action == "destroy-generation" {
		return fmt.Sprintf("destroy-generation of %s generation %d", r.Tenant, r.Generation)
	}
	return r.Action + " of " + r.Tenant
}

func adminPending(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	asJSON := fs.Bool("json", false, "print the requests as one JSON array")
	return noArgs, func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
		reqs, err := cl.PendingRequests(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			if reqs == nil {
				reqs = []*client.PendingRequest{}
			}
			return json.NewEncoder(e.stdout).Encode(reqs)
		}
		// One request a line, "key value" pairs, for grep and awk; the
		// reason last, since it is free text.
		for _, r := range reqs {
			line := fmt.Sprintf("request %s action %s tenant %s", r.ID, r.Action, r.Tenant)
			if r.Action == "destroy-generation" {
				line += fmt.Sprintf(" generation %d", r.Generation)
			}
			line += fmt.Sprintf(" requested-by %s approvals %d/%d", r.RequestedBy, len(r.ApprovedBy), r.ApprovalsRequired)
			if len(r.ApprovedBy) > 1 {
				line += " approved-by " + strings.Join(r.ApprovedBy[1:], ",")
			}
			line += fmt.Sprintf(" expires %s reason %q", r.Expires.UTC().Format(time.RFC3339), r.Reason)
			fmt.Fprintln(e.stdout, line)
		}
		return nil
	}
}

func adminApprove(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	id := fs.String("id", "", "the request, as \"pending\" lists it (required)")
	reason := fs.String("reason", "", "why, e.g. a ticket number (required; audited)")
	return func(args []string) error {
			if err := required(flagVal{"id", *id}, flagVal{"reason", *reason}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			r, err := cl.ApproveRequest(ctx, *id, *reason)
			if err != nil {
				return err
			}
			switch {
			case r.Done && r.Action == "purge-tenant":
				fmt.Fprintf(e.stdout, "approved request %s (%d of %d): done, %s, %d records erased\n", r.ID, len(r.ApprovedBy), r.ApprovalsRequired, describe(r), r.Erased)
			case r.Done:
				fmt.Fprintf(e.stdout, "approved request %s (%d of %d): done, %s\n", r.ID, len(r.ApprovedBy), r.ApprovalsRequired, describe(r))
			default:
				fmt.Fprintf(e.stdout, "approved request %s (%d of %d): pending, more approvals needed\n", r.ID, len(r.ApprovedBy), r.ApprovalsRequired)
			}
			return nil
		}
}

func adminCancel(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	id := fs.String("id", "", "the request, as \"pending\" lists it (required)")
	reason := fs.String("reason", "", "why, e.g. a ticket number (required; audited)")
	return func(args []string) error {
			if err := required(flagVal{"id", *id}, flagVal{"reason", *reason}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			if err := cl.CancelRequest(ctx, *id, *reason); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "cancelled request %s\n", *id)
			return nil
		}
}

func adminSweep(fs *flag.FlagSet) (func([]string) error, func(context.Context, *client.Client, []string, *env) error) {
	tenant := fs.String("tenant", "", "tenant whose destroyed generations to sweep (required)")
	return func(args []string) error {
			if err := required(flagVal{"tenant", *tenant}); err != nil {
				return err
			}
			return noArgs(args)
		},
		func(ctx context.Context, cl *client.Client, _ []string, e *env) error {
			p, err := cl.SweepDestroyed(ctx, *tenant, func(p client.SweepProgress) {
				fmt.Fprintf(e.stdout, "scanned %d deleted %d\n", p.Scanned, p.Deleted)
			})
			if err != nil {
				return err
			}
			for _, g := range p.Pending {
				fmt.Fprintf(e.stderr, "generation %d is marked destroyed but its Vault key still exists: run destroy-generation for it again, then sweep again\n", g)
			}
			return nil
		}
}
