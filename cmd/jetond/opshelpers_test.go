package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/vaultanchor"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

func errorsIsPermission(err error) bool { return errors.Is(err, client.ErrPermissionDenied) }

// writeAtomically replaces a file by renaming a complete new one over it.
func writeAtomically(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// serverCertSerial makes a new TLS connection to the public listener and
// returns the serial number of the certificate the server presents.
func serverCertSerial(t testing.TB, e *prodEnv) string {
	t.Helper()
	caPEM, err := os.ReadFile(e.pki.ServerCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(e.pki.SponsorCert, e.pki.SponsorKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", e.public, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// auditKey derives the audit log's key the way jetond does, from the same
// Redis and Vault, in this process.
func auditKey(t testing.TB, e *prodEnv) []byte {
	t.Helper()
	ctx := testCtx(t)
	rc, err := redisstore.NewClient(redisstore.Config{Addrs: []string{e.redis.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = e.vault.Addr
	vc, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(e.token)
	km, err := vaultkeys.New(ctx, vc, vaultkeys.Config{Mount: "transit", Key: "jeton-kek"})
	if err != nil {
		t.Fatal(err)
	}
	defer km.Close()
	tok, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: redisstore.New(rc)})
	if err != nil {
		t.Fatal(err)
	}
	key, err := tok.DeriveKey(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func auditFiles(dir string) ([]string, error) { return audit.Files(dir) }

// opsReplica is the audit replica id of the production-mode tests.
const opsReplica = "ops-0"

// readAudit verifies the log as a verifier would, with the public key and
// the replica's latest checkpoint read from Vault, and returns its records.
func readAudit(t testing.TB, e *prodEnv, files []string) []audit.Record {
	t.Helper()
	ctx := testCtx(t)
	a, err := vaultanchor.New(ctx, e.vault.Client(t), vaultanchor.Config{Replica: opsReplica})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := a.PublicKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := a.Load(ctx)
	if err != nil || cp == nil {
		t.Fatalf("the checkpoint of %s: %q, %v", opsReplica, cp, err)
	}
	rep, err := audit.Verify(files, audit.VerifyOptions{Keys: keys, Checkpoint: cp})
	if err != nil {
		t.Fatalf("the audit log does not verify: %v", err)
	}
	var recs []audit.Record
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			var line struct {
				Rec audit.Record `json:"rec"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("audit line: %v", err)
			}
			recs = append(recs, line.Rec)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(recs) != rep.Records {
		t.Fatalf("read %d records, Verify counted %d", len(recs), rep.Records)
	}
	return recs
}

// exposition is a parsed /metrics scrape.
type exposition map[string]*dto.MetricFamily

func scrape(t testing.TB, p *jetondProc) exposition {
	t.Helper()
	code, body, err := p.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// want: a counter's or gauge's value, a histogram's sample count. It is -1
// when there is no such series.
func (x exposition) value(name string, want map[string]string) float64 {
	f := x[name]
	if f == nil {
		return -1
	}
	sum, found := 0.0, false
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	if !found {
		return -1
	}
	return sum
}

// labelValues returns every label value in the scrape.
func (x exposition) labelValues() []string {
	var out []string
	for _, f := range x {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

var _ = time.Second
var _ = context.Background
