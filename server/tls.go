package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sync/atomic"
	"time"
)

// TLSFiles names a listener's PEM files.
type TLSFiles struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
	// CRLs are certificate revocation lists (PEM or DER), each signed by
	// a certificate of ClientCA. A client certificate they list is
	// refused at its next handshake, and on the next call of a connection
	// it opened before. They are read again with the rest on reload
	// (SIGHUP).
	CRLs []string `yaml:"crls"`
}

// ErrRevoked is a client certificate a loaded CRL lists.
var ErrRevoked = errors.New("server: tls: client certificate revoked")

// ReloadableTLS is a listener's TLS material that can be swapped while the
// listener serves: new handshakes use the new material, open connections
// keep theirs (but their calls are checked against the current CRLs).
type ReloadableTLS struct {
	files TLSFiles
	cur   atomic.Pointer[material]
	// now is the clock for CRL freshness warnings.
	now func() time.Time
	// log receives warnings about loaded material; server.New sets it.
	log atomic.Pointer[slog.Logger]
}

// material is one load of the files.
type material struct {
	cfg *tls.Config
	// anchors are the client CA certificates, by their DER encoding: the
	// authority a verified chain ends in. Every call looks its chain's
	// anchor up, and a map hashes a certificate far faster than SHA-256.
	anchors map[string]bool
	revoked revocations
	// stale names the CRL files past their next update. They are still
	// enforced: a stale list revokes no less.
	stale []string
	// crls is, per issuer (raw subject), the newest CRL loaded: a reload
	// never goes back to an older one (crlVersion.older).
	crls map[string]crlVersion
}

// crlVersion is where a CRL stands in its issuer's sequence.
type crlVersion struct {
	number     *big.Int // the CRL Number extension; nil when absent
	thisUpdate time.Time
	path       string
}

// older reports whether v comes before w: by CRL Number when both carry
// one (RFC 5280 5.2.3: it increases monotonically), by thisUpdate
// otherwise.
func (v crlVersion) older(w crlVersion) bool {
	if v.number != nil && w.number != nil {
		return v.number.Cmp(w.number) < 0
	}
	return v.thisUpdate.Before(w.thisUpdate)
}

func (v crlVersion) String() string {
	if v.number != nil {
		return fmt.Sprintf("number %s, this update %s", v.number, v.thisUpdate.UTC().Format(time.RFC3339))
	}
	return "this update " + v.thisUpdate.UTC().Format(time.RFC3339)
}

// revocations maps an issuer (its raw subject) to the revoked serial
// numbers (decimal) it listed.
type revocations map[string]map[string]bool

// LoadTLS reads the files and returns material for a listener that requires
// TLS 1.3 and a client certificate issued by the client CA and not revoked.
func LoadTLS(files TLSFiles) (*ReloadableTLS, error) {
	r := &ReloadableTLS{files: files, now: time.Now}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads the files. On error the previous material stays in use.
func (r *ReloadableTLS) Reload() error {
	m, err := r.load()
	if err != nil {
		return err
	}
	r.cur.Store(m)
	r.warnStale()
	return nil
}

// setLogger gives r a logger for its warnings, and logs those of the
// material in use.
func (r *ReloadableTLS) setLogger(l *slog.Logger) {
	r.log.Store(l)
	r.warnStale()
}

func (r *ReloadableTLS) warnStale() {
	if l := r.log.Load(); l != nil {
		for _, f := range r.cur.Load().stale {
			l.Warn("a certificate revocation list is past its next update; it is still enforced, but publish a fresh one", "crl", f)
		}
	}
}

func (r *ReloadableTLS) load() (*material, error) {
	f := r.files
	if f.Cert == "" || f.Key == "" || f.ClientCA == "" {
		return nil, errors.New("server: tls: cert, key and client_ca are all required")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("server: tls: loading cert %s and key %s: %w", f.Cert, f.Key, err)
	}
	caPEM, err := os.ReadFile(f.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("server: tls: client_ca: %w", err)
	}
	m := &material{anchors: map[string]bool{}, revoked: revocations{}, crls: map[string]crlVersion{}}
	pool := x509.NewCertPool()
	var cas []*x509.Certificate
	for rest := caPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("server: tls: client_ca %s: %w", f.ClientCA, err)
		}
		pool.AddCert(c)
		cas = append(cas, c)
		m.anchors[string(c.Raw)] = true
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("server: tls: client_ca %s holds no PEM certificate", f.ClientCA)
	}
	for _, path := range f.CRLs {
		if err := r.loadCRL(m, path, cas); err != nil {
			return nil, err
		}
	}
	// Rollback: replacing a CRL by an older one of the same issuer (a
	// restored backup, a stale copy from a mirror) would lift the
	// revocations made since. Refused; the material in use stays.
	if cur := r.cur.Load(); cur != nil {
		for issuer, was := range cur.crls {
			if now, ok := m.crls[issuer]; ok && now.older(was) {
				return nil, fmt.Errorf("server: tls: crl %s (%s) is older than the one in use, %s (%s): refusing to roll revocations back; publish the newest CRL of that CA",
					now.path, now, was.path, was)
			}
		}
	}
	m.cfg = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{"h2"},
		// Runs after the chain is verified, on resumed sessions too.
		VerifyConnection: func(cs tls.ConnectionState) error {
			return m.revoked.check(cs.VerifiedChains)
		},
	}
	return m, nil
}

// loadCRL adds a CRL's entries to rv, once its signature checks against
// one of the client CA certificates.
func (r *ReloadableTLS) loadCRL(m *material, path string, cas []*x509.Certificate) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("server: tls: crl: %w", err)
	}
	if p, _ := pem.Decode(b); p != nil {
		b = p.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return fmt.Errorf("server: tls: crl %s: %w", path, err)
	}
	signed := false
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return fmt.Errorf("server: tls: crl %s is not signed by a certificate of client_ca", path)
	}
	if !crl.NextUpdate.IsZero() && r.now().After(crl.NextUpdate) {
		m.stale = append(m.stale, path)
	}
	v := crlVersion{number: crl.Number, thisUpdate: crl.ThisUpdate, path: path}
	if was, ok := m.crls[string(crl.RawIssuer)]; !ok || was.older(v) {
		m.crls[string(crl.RawIssuer)] = v
	}
	serials := m.revoked[string(crl.RawIssuer)]
	if serials == nil {
		serials = map[string]bool{}
		m.revoked[string(crl.RawIssuer)] = serials
	}
	for _, e := range crl.RevokedCertificateEntries {
		serials[e.SerialNumber.String()] = true
	}
	return nil
}

// check refuses chains whose leaf or intermediate a CRL lists. Every
// verified chain must be clean: a revoked certificate stays revoked
// whichever path verifies it.
func (rv revocations) check(chains [][]*x509.Certificate) error {
	if len(rv) == 0 {
		return nil
	}
	for _, chain := range chains {
		for _, c := range chain[:max(len(chain)-1, 0)] {
			if rv[string(c.RawIssuer)][c.SerialNumber.String()] {
				return ErrRevoked
			}
		}
	}
	return nil
}

// Config returns a tls.Config for a listener. It resolves the current
// material at each handshake.
func (r *ReloadableTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().cfg, nil
		},
	}
}

// revoked reports whether the current CRLs list a certificate of chains,
// for connections opened before they were loaded.
func (r *ReloadableTLS) revoked(chains [][]*x509.Certificate) bool {
	return r.cur.Load().revoked.check(chains) != nil
}

// anchoredIn reports whether some chain ends in a CA certificate of r and
// in none of other's: an authority both listeners trust can vouch for
// neither side's identities.
func (r *ReloadableTLS) anchoredIn(chains [][]*x509.Certificate, other *ReloadableTLS) bool {
	mine, theirs := r.cur.Load().anchors, other.cur.Load().anchors
	for _, chain := range chains {
		if len(chain) == 0 {
			continue
		}
		raw := chain[len(chain)-1].Raw
		if mine[string(raw)] && !theirs[string(raw)] {
			return true
		}
	}
	return false
}

// shared returns how many client CA certificates r and other both trust.
func (r *ReloadableTLS) shared(other *ReloadableTLS) int {
	n := 0
	theirs := other.cur.Load().anchors
	for fp := range r.cur.Load().anchors {
		if theirs[fp] {
			n++
		}
	}
	return n
}
