package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jeton-dev/jeton/server"
)

// Config errors name the YAML key and the file, never Go types: yaml.v3
// reports "field alowed_cidrs not found in type main.ListenerConfig" and
// "cannot unmarshal !!str `...` into int" (quoting the value, which may be
// a password). checkKeys walks the YAML tree against Config's yaml tags
// first, and names the key, its line and what was expected.

// checkKeys reports the first unknown key or misshapen value of doc, by
// line and dotted key path, and records every key's path by line in paths.
func checkKeys(n *yaml.Node, t reflect.Type, path string, paths map[int]string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	where := func() string {
		if path == "" {
			return fmt.Sprintf("line %d", n.Line)
		}
		return fmt.Sprintf("line %d: %s", n.Line, path)
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a duration such as 30s or 4380h", where())
		}
		if _, err := time.ParseDuration(n.Value); err != nil && n.Tag != "!!int" {
			return fmt.Errorf("%s: want a duration such as 30s or 4380h", where())
		}
		return nil
	case t == reflect.TypeFor[time.Time]():
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a date such as 2031-03-31", where())
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: want a mapping of keys (%s)", where(), strings.Join(yamlKeys(t), ", "))
		}
		fields := map[string]reflect.StructField{}
		for _, f := range reflect.VisibleFields(t) {
			if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
				fields[name] = f
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			paths[k.Line] = sub
			paths[v.Line] = sub
			f, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("line %d: unknown key %s", k.Line, sub)
				if s := closest(k.Value, yamlKeys(t)); s != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", s)
				} else {
					msg += fmt.Sprintf(" (known here: %s)", strings.Join(yamlKeys(t), ", "))
				}
				return errors.New(msg)
			}
			if err := checkKeys(v, f.Type, sub, paths); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: want a list, e.g. [a, b]", where())
		}
		for i, c := range n.Content {
			if err := checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), paths); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: want a mapping", where())
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a single value", where())
		}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a number", where())
		}
		if _, err := strconv.ParseInt(n.Value, 0, 64); err != nil {
			return fmt.Errorf("%s: want a whole number", where())
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return fmt.Errorf("%s: want true or false", where())
		}
	}
	return nil
}

// yamlKeys lists the keys a struct accepts.
func yamlKeys(t reflect.Type) []string {
	var out []string
	for _, f := range reflect.VisibleFields(t) {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// closest returns the known key within two edits of k, if any.
func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// decodeError turns a yaml.v3 decoding error into one that names the key
// by its line, without Go type names or the value.
func decodeError(err error, paths map[int]string) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		m := yamlLine.FindStringSubmatch(te.Errors[0])
		if m != nil {
			line, _ := strconv.Atoi(m[1])
			if p, ok := paths[line]; ok {
				return fmt.Errorf("line %d: %s: the value has the wrong type", line, p)
			}
			return fmt.Errorf("line %d: a value has the wrong type", line)
		}
	}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("line %s: not valid YAML", m[1])
	}
	return errors.New("not valid YAML")
}

// checkLocal checks every file the configuration names, without
// contacting Redis or Vault: TLS material, the policy (against the
// configured classes), Redis's TLS files, AppRole's secret_id file, and
// the audit directory. Start-up runs it before connecting to anything, so
// a typo in a path fails in a second, not after a backend timeout.
func checkLocal(cfg *Config) error {
	var errs []error
	for _, l := range []struct {
		name string
		tls  server.TLSFiles
	}{{"public", cfg.Public.TLS}, {"trusted", cfg.Trusted.TLS}} {
		if _, err := server.LoadTLS(l.tls); err != nil {
			errs = append(errs, fmt.Errorf("%s.tls (cert %s, key %s, client_ca %s): %w", l.name, l.tls.Cert, l.tls.Key, l.tls.ClientCA, err))
		}
	}
	classes, err := cfg.classes()
	if err != nil {
		errs = append(errs, fmt.Errorf("classes: %w", err))
	} else {
		var names []string
		for _, c := range classes {
			names = append(names, c.Name)
		}
		if _, err := server.LoadPolicy(cfg.PolicyFile, names); err != nil {
			errs = append(errs, fmt.Errorf("policy_file %s: %w", cfg.PolicyFile, err))
		}
	}
	if _, err := cfg.Redis.TLS.config(); err != nil {
		errs = append(errs, fmt.Errorf("redis.tls: %w", err))
	}
	if f := cfg.Vault.AppRole.SecretIDFile; f != "" {
		if b, err := os.ReadFile(f); err != nil {
			errs = append(errs, fmt.Errorf("vault.approle.secret_id_file: %w", err))
		} else if strings.TrimSpace(string(b)) == "" {
			errs = append(errs, fmt.Errorf("vault.approle.secret_id_file %s is empty", f))
		}
	}
	if err := checkAuditDir(cfg.Audit.Dir); err != nil {
		errs = append(errs, fmt.Errorf("audit.dir: %w", err))
	}
	return errors.Join(errs...)
}

// checkAuditDir checks that dir exists and is writable, or can be created.
func checkAuditDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		parent := filepath.Dir(dir)
		if pfi, perr := os.Stat(parent); perr != nil || !pfi.IsDir() {
			return fmt.Errorf("%s does not exist, nor does its parent %s", dir, parent)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".jetond-check-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
