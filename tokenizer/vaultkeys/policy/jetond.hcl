# jeton-jetond: the policy jetond runs under. Rendered by vaultkeys.Policies.
#
# Least privilege: jetond wraps the keys it makes (encrypt) and unwraps them
# (decrypt), always with associated_data binding each wrapped key to its
# tenant, generation and purpose, and reads the main KEK's configuration so
# it can refuse to start when the KEK is exportable. It cannot export,
# rotate, reconfigure, trim or delete the main KEK, and it reaches no other
# key, mount or secret. transit/datakey and transit/rewrap are not granted:
# Vault ignores associated_data on both.
#
# Per-generation KEKs live in the namespace "{{.GenKeys}}": jetond creates
# one per tenant generation and deletes it to crypto-shred that generation.

# Wrap and unwrap under the main KEK (tenant root keys, jeton's own root
# key). Only the plaintext or ciphertext and its associated data: no
# batch_input, no key_version, no context, no nonce.
path "{{.Mount}}/encrypt/{{.Key}}" {
  capabilities = ["update"]
  allowed_parameters = {
    "plaintext"       = []
    "associated_data" = []
  }
}

path "{{.Mount}}/decrypt/{{.Key}}" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"      = []
    "associated_data" = []
  }
}

path "{{.Mount}}/keys/{{.Key}}" {
  capabilities = ["read"]
}

# The per-generation KEKs. The glob also reaches the keys' sub-paths
# (config, rotate, trim, import), so allowed_parameters is the whole list
# of what jetond may send there: "type" to create a key, only as
# aes256-gcm96, and "deletion_allowed" on config to delete one. That
# leaves out exportable, allow_plaintext_backup, derived, key material to
# import and trimming, which all need parameters; what remains reachable,
# a parameterless rotate, only adds a version to a key jetond may delete.
path "{{.Mount}}/keys/{{.GenKeys}}" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "type"             = ["aes256-gcm96"]
    "deletion_allowed" = []
  }
}

# Wrap and unwrap each generation's data key under its own KEK. encrypt
# has "update" only, never "create": Transit's encrypt-creates-the-key
# upsert stays out of reach, so a generation key is made only by the
# checked path above.
path "{{.Mount}}/encrypt/{{.GenKeys}}" {
  capabilities = ["update"]
  allowed_parameters = {
    "plaintext"       = []
    "associated_data" = []
  }
}

path "{{.Mount}}/decrypt/{{.GenKeys}}" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"      = []
    "associated_data" = []
  }
}

# The names of the mount's keys, so that purging a tenant finds and
# destroys every one of its generation keys, even those the store lost.
path "{{.Mount}}/keys" {
  capabilities = ["list"]
}

# Keep jetond's own token alive (LifetimeWatcher) and let it inspect itself,
# so the token needs no "default" policy.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# ---- Audit anchor (server/audit/vaultanchor) --------------------------------
# jetond signs checkpoints of its audit log with an Ed25519 Transit key that
# never leaves Vault, and stores the latest per replica in a KV v2 mount with
# check-and-set (the mount has cas_required=true). It may read and write the
# current version, never delete or destroy one, nor touch the metadata, so
# the stored history of checkpoints is out of its reach.

path "{{.Mount}}/sign/{{.AuditKey}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/keys/{{.AuditKey}}" {
  capabilities = ["read"]
}

path "{{.AuditKV}}/data/checkpoints/*" {
  capabilities = ["create", "read", "update"]
}
