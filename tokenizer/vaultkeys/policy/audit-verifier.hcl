# jeton-audit-verifier: what `jeton audit verify --vault` needs to check an
# audit log with the public key only. Rendered by vaultkeys.Policies.
#
# Reading a Transit key returns its configuration and, for Ed25519, its
# public keys; never private material (the key is not exportable). The
# checkpoints and their older versions are read only. This policy can
# neither sign nor write, so a verifier cannot forge a checkpoint.

path "{{.Mount}}/keys/{{.AuditKey}}" {
  capabilities = ["read"]
}

path "{{.AuditKV}}/data/checkpoints/*" {
  capabilities = ["read"]
}

path "{{.AuditKV}}/metadata/checkpoints/*" {
  capabilities = ["read", "list"]
}
