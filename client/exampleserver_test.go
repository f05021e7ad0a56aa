package client_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

type exampleEnv struct {
	publicAddr, trustedAddr string
	caFile                  string
	sponsorCert, sponsorKey string
	ttpCert, ttpKey         string
}

const examplePolicy = `
identities:
  - {id: "` + devpki.SponsorID + `", tenants: [demo], roles: [sponsor-app]}
  - {id: "` + devpki.TTPID + `", tenants: [demo], roles: [vetting]}
roles:
  sponsor-app: {tokenize: ["*"], budget: {distinct: 1000000}}
  vetting: {reveal: {"*": full}, purposes: [vetting]}
purposes:
  - {code: vetting, description: background check, classes: ["*"], case_ref_required: true}
`

// startExampleServer starts a real jeton server (in-memory store and
// ephemeral keys, as in dev mode) for the examples, and returns how to reach
// it and how to stop it.
func startExampleServer() (exampleEnv, func()) {
	dir, err := os.MkdirTemp("", "jeton-example-")
	if err != nil {
		panic(err)
	}
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	b, err := devpki.Generate(dir)
	must(err)
	km, err := localkeys.New(true)
	must(err)
	// The built-in classes, and two with format-preserving token shapes.
	classes := append(tokenizer.DefaultClasses(),
		tokenizer.Class{Name: "contact-email", Normalize: []string{"trim", "fold", "email"}, Mask: "email", Shape: tokenizer.Shape{Kind: tokenizer.ShapeEmail}},
		tokenizer.Class{Name: "badge", Mask: "last3", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9", KeepSuffix: 2}})
	tok, err := tokenizer.New(tokenizer.Config{Classes: classes, Keys: km, Store: memstore.New()})
	must(err)
	var names []string
	for _, c := range tok.Classes() {
		names = append(names, c.Name)
	}
	pol, err := server.ParsePolicy([]byte(examplePolicy), names)
	must(err)
	pub, err := server.LoadTLS(server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.SponsorCA})
	must(err)
	tru, err := server.LoadTLS(server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.TTPCA})
	must(err)
	key := make([]byte, audit.KeySize)
	_, err = rand.Read(key)
	must(err)
	alog, err := audit.Open(audit.Config{Dir: filepath.Join(dir, "audit"), Key: key})
	must(err)
	srv, err := server.New(server.Config{
		Tokenizer: tok, Policy: pol, Audit: alog,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Public:  server.Listener{Addr: "127.0.0.1:0", TLS: pub},
		Trusted: server.Listener{Addr: "127.0.0.1:0", TLS: tru, Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	})
	must(err)
	srv.Start()
	env := exampleEnv{
		publicAddr: srv.PublicAddr().String(), trustedAddr: srv.TrustedAddr().String(), caFile: b.ServerCA,
		sponsorCert: b.SponsorCert, sponsorKey: b.SponsorKey, ttpCert: b.TTPCert, ttpKey: b.TTPKey,
	}
	return env, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
		alog.Close()
		os.RemoveAll(dir)
	}
}
