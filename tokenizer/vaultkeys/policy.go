package vaultkeys

import (
	"embed"
	"fmt"
	"regexp"
	"strings"
	"text/template"
)

// Names of the Vault objects Setup writes and New expects.
const (
	// PolicyJetond is the policy jetond's token carries.
	PolicyJetond = "jeton-jetond"
	// PolicyCustodian is the policy for the KEK's custodians.
	PolicyCustodian = "jeton-custodian"
	// RoleName is the AppRole role bound to PolicyJetond.
	RoleName = "jetond"
)

// Audit anchor: the Vault objects that make jetond's audit log publicly
// verifiable (server/audit/vaultanchor). Setup creates them; jetond signs
// checkpoints and writes them with check-and-set; a verifier only reads.
const (
	// PolicyAuditVerifier may read the signing key's public keys and the
	// stored checkpoints, nothing else.
	PolicyAuditVerifier = "jeton-audit-verifier"
	// DefaultAuditSigningKey is the Ed25519 Transit key, on the KEK's
	// mount, that signs checkpoints. Its name must stay outside the
	// "<Key>-*" namespace jetond may create and delete keys in.
	DefaultAuditSigningKey = "jeton-audit-checkpoints"
	// DefaultAuditKVMount is the KV version 2 mount of the checkpoints,
	// one per replica under checkpoints/<replica>.
	DefaultAuditKVMount = "jeton-audit"
)

// Default names used when a Config or SetupConfig leaves them empty.
const (
	DefaultMount        = "transit"
	DefaultKey          = "jeton-kek"
	DefaultAppRoleMount = "approle"
)

//go:embed policy/*.hcl
var policyFS embed.FS

var policyTemplates = template.Must(template.ParseFS(policyFS, "policy/*.hcl"))

// The names end up inside policy paths, where "*" and "+" are globs and a
// quote would end the string: a key named "*" would grant every key. Only
// plain names are accepted. The key pattern is Transit's own name rule.
var (
	mountPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
	keyPattern   = regexp.MustCompile(`^\w([\w.-]*\w)?$`)
)

func checkNames(mount, key string) error {
	if !mountPattern.MatchString(mount) {
		return fmt.Errorf("vaultkeys: Mount %q is not a plain Vault path (letters, digits, '_', '.', '-', '/')", mount)
	}
	if !keyPattern.MatchString(key) {
		return fmt.Errorf("vaultkeys: Key %q is not a valid Transit key name", key)
	}
	return nil
}

// Policies renders jeton's Vault policies for the KEK named key on the
// Transit mount mount, keyed by policy name (PolicyJetond, PolicyCustodian,
// PolicyAuditVerifier).
//
// Only jeton-jetond can obtain a plaintext data key or unwrap one; custodians
// manage the KEK's lifecycle but never see key material.
//
// Policies panics if mount or key is not a plain name, since a glob or a
// quote would widen the policy; New and Setup check the names first and
// return an error instead.
func Policies(mount, key string) map[string]string {
	mount = strings.Trim(mount, "/")
	if err := checkNames(mount, key); err != nil {
		panic(err)
	}
	data := struct{ Mount, Key, GenKeys, AuditKey, AuditKV string }{mount, key, GenerationKeyGlob(key), DefaultAuditSigningKey, DefaultAuditKVMount}
	out := map[string]string{}
	for name, file := range map[string]string{PolicyJetond: "jetond.hcl", PolicyCustodian: "custodian.hcl",
		PolicyAuditVerifier: "audit-verifier.hcl"} {
		var b strings.Builder
		if err := policyTemplates.ExecuteTemplate(&b, file, data); err != nil {
			panic(fmt.Sprintf("vaultkeys: rendering %s: %v", file, err))
		}
		out[name] = b.String()
	}
	return out
}
