package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

type result struct {
	code           int
	stdout, stderr string
}

// jeton runs the CLI in-process with the given stdin and environment.
func jeton(t testing.TB, environ map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut, func(k string) string { return environ[k] })
	return result{code, out.String(), errOut.String()}
}

// environFor points the CLI at a server through the environment.
func environFor(addr string, f tlsFiles) map[string]string {
	return map[string]string{"JETON_ADDR": addr, "JETON_CACERT": f.ca, "JETON_CERT": f.cert, "JETON_KEY": f.key}
}

// checkNoValues fails if stderr quotes any of values.
func checkNoValues(t testing.TB, stderr string, values ...string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(stderr, v) {
			t.Errorf("stderr quotes a value %q:\n%s", v, stderr)
		}
	}
}

func TestTokenize(t *testing.T) {
	addr, files, s := startStub(t, nil)
	environ := environFor(addr, files)
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantOut    string
		wantErrs   []string // substrings of stderr
		wantNoErrs bool
	}{
		{"values from args", "", []string{"--class", "email", "anne@example.org", "bob@example.org"}, exitOK,
			"tk-anne@example.org\ntk-bob@example.org\n", nil, true},
		{"values from stdin", "anne@example.org\r\nbob@example.org\n", []string{"--class", "email"}, exitOK,
			"tk-anne@example.org\ntk-bob@example.org\n", nil, true},
		{"flags after values", "", []string{"anne@example.org", "--class", "email"}, exitOK,
			"tk-anne@example.org\n", nil, true},
		{"dash value after --", "", []string{"--class", "email", "--", "-anne@example.org"}, exitOK,
			"tk--anne@example.org\n", nil, true},
		{"failed line keeps alignment", "anne@example.org\n\nbob@example.org\n", []string{"--class", "email"}, exitItem,
			"tk-anne@example.org\n\ntk-bob@example.org\n", []string{"jeton: tokenize: line 2: InvalidArgument: value is empty"}, false},
		{"failed argument named by position", "", []string{"--class", "shoe-size", "size-thirty-eight"}, exitItem,
			"\n", []string{"jeton: tokenize: argument 1: InvalidArgument: unknown field class"}, false},
		{"json", "anne@example.org\n\n", []string{"--class", "email", "--json"}, exitItem,
			`{"token":"tk-anne@example.org"}` + "\n" + `{"error":{"code":"InvalidArgument","message":"value is empty"}}` + "\n",
			[]string{"line 2"}, false},
		{"class required", "anne@example.org\n", nil, exitUsage, "", []string{"jeton: tokenize: --class is required"}, false},
		{"unknown flag", "", []string{"--class", "email", "--colour"}, exitUsage, "", []string{"-colour"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := jeton(t, environ, tt.stdin, append([]string{"tokenize"}, tt.args...)...)
			if got.code != tt.wantCode || got.stdout != tt.wantOut {
				t.Errorf("exit %d, stdout %q; want exit %d, stdout %q (stderr %q)", got.code, got.stdout, tt.wantCode, tt.wantOut, got.stderr)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(got.stderr, w) {
					t.Errorf("stderr %q does not contain %q", got.stderr, w)
				}
			}
			if tt.wantNoErrs && got.stderr != "" {
				t.Errorf("stderr = %q, want nothing", got.stderr)
			}
			checkNoValues(t, got.stderr, "anne@example.org", "bob@example.org", "size-thirty-eight")
		})
	}

	jeton(t, environ, "", "tokenize", "--class", "name", "--subject", "guest-0001", "Anne Example")
	req, _ := s.lastRequest().(*jetonv1.TokenizeRequest)
	if it := req.GetItems(); len(it) != 1 || it[0].GetSubjectId() != "guest-0001" || it[0].GetFieldClass() != "name" {
		t.Errorf("sent %v, want one name item for subject guest-0001", req)
	}
}

func TestDetokenize(t *testing.T) {
	addr, files, s := startStub(t, nil)
	environ := environFor(addr, files)
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		wantOut  string
		wantErrs []string
	}{
		{"tokens from args", "", []string{"--purpose", "vetting", "tk-anne@example.org", "tk-bob@example.org"}, exitOK,
			"anne@example.org\nbob@example.org\n", nil},
		{"tokens from stdin", "tk-anne@example.org\ntk-bob@example.org\n", []string{"--purpose", "vetting"}, exitOK,
			"anne@example.org\nbob@example.org\n", nil},
		{"mask", "tk-anne@example.org\n", []string{"--purpose", "vetting", "--mask"}, exitOK, "a***\n", nil},
		{"unknown token keeps alignment", "tk-anne@example.org\nnope\ntk-bob@example.org\n", []string{"--purpose", "vetting"}, exitItem,
			"anne@example.org\n\nbob@example.org\n", []string{"jeton: detokenize: line 2: NotFound: token not found"}},
		{"json", "tk-anne@example.org\nnope\n", []string{"--purpose", "vetting", "--json"}, exitItem,
			`{"value":"anne@example.org","masked":false,"class":"email"}` + "\n" + `{"error":{"code":"NotFound","message":"token not found"}}` + "\n", nil},
		{"json mask", "tk-anne@example.org\n", []string{"--purpose", "vetting", "--json", "--mask"}, exitOK,
			`{"value":"a***","masked":true,"class":"email"}` + "\n", nil},
		{"multi-line value is not printed plain", "", []string{"--purpose", "vetting", "tk-1 Main St\nSpringfield", "tk-bob@example.org"}, exitItem,
			"\nbob@example.org\n", []string{"argument 1: value spans several lines; use --json"}},
		{"multi-line value in json", "", []string{"--purpose", "vetting", "--json", "tk-1 Main St\nSpringfield"}, exitOK,
			`{"value":"1 Main St\nSpringfield","masked":false,"class":"email"}` + "\n", nil},
		{"purpose required", "tk-anne@example.org\n", nil, exitUsage, "", []string{"--purpose is required"}},
		{"purpose denied", "tk-anne@example.org\n", []string{"--purpose", "marketing"}, exitRPC, "",
			[]string{"jeton: detokenize: client: PermissionDenied: purpose not allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := jeton(t, environ, tt.stdin, append([]string{"detokenize"}, tt.args...)...)
			if got.code != tt.wantCode || got.stdout != tt.wantOut {
				t.Errorf("exit %d, stdout %q; want exit %d, stdout %q (stderr %q)", got.code, got.stdout, tt.wantCode, tt.wantOut, got.stderr)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(got.stderr, w) {
					t.Errorf("stderr %q does not contain %q", got.stderr, w)
				}
			}
			checkNoValues(t, got.stderr, "anne@example.org", "bob@example.org", "Main St")
		})
	}

	jeton(t, environ, "", "detokenize", "--purpose", "vetting", "--case-ref", "case-2031-0042", "tk-anne@example.org")
	if req, _ := s.lastRequest().(*jetonv1.DetokenizeRequest); req.GetCaseRef() != "case-2031-0042" || req.GetPurpose() != "vetting" {
		t.Errorf("sent %v, want purpose vetting and the case ref", req)
	}
}

func TestCallFailure(t *testing.T) {
	tests := []struct {
		name     string
		fail     error
		wantErrs string
	}{
		{"unavailable", status.Error(codes.Unavailable, "backend down"), "jeton: tokenize: client: Unavailable: backend down"},
		{"denied", status.Error(codes.PermissionDenied, "class not allowed"), "jeton: tokenize: client: PermissionDenied: class not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, files, _ := startStub(t, tt.fail)
			got := jeton(t, environFor(addr, files), "anne@example.org\n", "tokenize", "--class", "email")
			if got.code != exitRPC || got.stdout != "" || !strings.Contains(got.stderr, tt.wantErrs) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", got.code, got.stdout, got.stderr, exitRPC, tt.wantErrs)
			}
		})
	}
}

func TestConnectionSettings(t *testing.T) {
	addr, files, _ := startStub(t, nil)
	good := environFor(addr, files)
	with := func(k, v string) map[string]string {
		m := environFor(addr, files)
		m[k] = v
		return m
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name     string
		environ  map[string]string
		flags    []string
		wantCode int
		wantErrs []string
	}{
		{"environment only", good, nil, exitOK, nil},
		{"flags only", nil, []string{"--addr", addr, "--cacert", files.ca, "--cert", files.cert, "--key", files.key}, exitOK, nil},
		{"flag overrides wrong env address", with("JETON_ADDR", "127.0.0.1:1"), []string{"--addr", addr}, exitOK, nil},
		{"flag overrides wrong env key", with("JETON_KEY", missing), []string{"--key", files.key}, exitOK, nil},
		{"flag overrides bad env timeout", with("JETON_TIMEOUT", "soon"), []string{"--timeout", "5s"}, exitOK, nil},
		{"nothing set", nil, nil, exitUsage, []string{"--addr (or JETON_ADDR)", "--cacert (or JETON_CACERT)", "--cert (or JETON_CERT)", "--key (or JETON_KEY)"}},
		{"missing cert and key", with("JETON_CERT", ""), []string{"--key", ""}, exitUsage, []string{"missing --cert (or JETON_CERT), --key (or JETON_KEY)"}},
		{"cert file absent", with("JETON_CERT", missing), nil, exitUsage, []string{missing}},
		{"bad timeout", with("JETON_TIMEOUT", "soon"), nil, exitUsage, []string{"--timeout (or JETON_TIMEOUT)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"tokenize", "--class", "email"}, tt.flags...)
			got := jeton(t, tt.environ, "", append(args, "anne@example.org")...)
			if got.code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", got.code, tt.wantCode, got.stderr)
			}
			if tt.wantCode == exitOK && got.stdout != "tk-anne@example.org\n" {
				t.Errorf("stdout %q, want the token", got.stdout)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(got.stderr, w) {
					t.Errorf("stderr %q does not contain %q", got.stderr, w)
				}
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout bool // usage on stdout rather than stderr
	}{
		{"help", []string{"help"}, exitOK, true},
		{"-h", []string{"-h"}, exitOK, true},
		{"--help", []string{"--help"}, exitOK, true},
		{"no command", nil, exitUsage, false},
		{"unknown command", []string{"vault-setup"}, exitUsage, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := jeton(t, nil, "", tt.args...)
			usage := got.stderr
			if tt.wantStdout {
				usage = got.stdout
			}
			if got.code != tt.wantCode || !strings.Contains(usage, "tokenize") || !strings.Contains(usage, "detokenize") {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and the commands listed", got.code, got.stdout, got.stderr, tt.wantCode)
			}
		})
	}

	got := jeton(t, nil, "", "detokenize", "-h")
	if got.code != exitOK || !strings.Contains(got.stderr, "--purpose PURPOSE") || !strings.Contains(got.stderr, "JETON_ADDR") {
		t.Errorf("detokenize -h: exit %d, stderr %q", got.code, got.stderr)
	}
}
