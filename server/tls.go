package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// TLSFiles names a listener's PEM files.
type TLSFiles struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// ReloadableTLS is a listener's TLS material that can be swapped while the
// listener serves: new handshakes use the new material, open connections
// keep theirs.
type ReloadableTLS struct {
	files TLSFiles
	cur   atomic.Pointer[tls.Config]
}

// LoadTLS reads the files and returns material for a listener that requires
// TLS 1.3 and a client certificate issued by the client CA.
func LoadTLS(files TLSFiles) (*ReloadableTLS, error) {
	r := &ReloadableTLS{files: files}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads the files. On error the previous material stays in use.
func (r *ReloadableTLS) Reload() error {
	cfg, err := buildTLS(r.files)
	if err != nil {
		return err
	}
	r.cur.Store(cfg)
	return nil
}

func buildTLS(f TLSFiles) (*tls.Config, error) {
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
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("server: tls: client_ca %s holds no PEM certificate", f.ClientCA)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{"h2"},
	}, nil
}

// Config returns a tls.Config for a listener. It resolves the current
// material at each handshake.
func (r *ReloadableTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load(), nil
		},
	}
}
