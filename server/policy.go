package server

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/jeton-dev/jeton/server/budget"
	"github.com/jeton-dev/jeton/tokenizer"
)

// Reveal says how much of a value a role may see.
type Reveal string

const (
	// RevealNone refuses the reveal.
	RevealNone Reveal = ""
	// RevealMasked returns only the masked form.
	RevealMasked Reveal = "masked"
	// RevealFull returns the whole value.
	RevealFull Reveal = "full"
)

// PolicyFile is the YAML policy as written by operators.
//
//	identities:
//	  - id: spiffe://event.example/sponsor/accreditation
//	    tenants: [acme]
//	    roles: [sponsor-app]
//	    ca: sponsor                 # the default for an identity that tokenizes
//	roles:
//	  sponsor-app:
//	    tokenize: ["*"]
//	    # Deterministic classes are an oracle: a role that may tokenize one
//	    # needs a budget of distinct values per window (distinct, window).
//	    budget: {max_batch: 1000, rate: 500, burst: 5000, distinct: 50000, window: 24h, suspend_after: 1}
//	  vetting:
//	    reveal: {name: full, birthdate: full, "*": masked}
//	    purposes: [vetting]
//	    budget: {max_batch: 100, rate: 50, burst: 200, distinct: 1000, window: 24h, suspend_after: 3}
//	  custodian:
//	    admin: true
//	purposes:
//	  - code: vetting
//	    description: background check of an accreditation request
//	    classes: ["*"]
//	    case_ref_required: true
type PolicyFile struct {
	Identities []IdentityRule      `yaml:"identities"`
	Roles      map[string]RoleRule `yaml:"roles"`
	Purposes   []PurposeRule       `yaml:"purposes"`
	// DualControl says how many custodians must agree to destroy a
	// generation or purge a tenant; see DualControlRule.
	DualControl *DualControlRule `yaml:"dual_control"`
}

// IdentityRule binds a certificate identity (URI SAN, else CN) to tenants
// and roles, and to the CA its certificate must come from.
type IdentityRule struct {
	ID      string   `yaml:"id"`
	Tenants []string `yaml:"tenants"`
	Roles   []string `yaml:"roles"`
	// CA names the authority that must have issued the identity's
	// certificate: CASponsor (the public listener's client CA) or CATTP
	// (the trusted listener's). Empty means the one of its side: sponsor
	// for an identity that tokenizes, TTP for one that reveals or
	// administers. A revealing or administering identity cannot name the
	// sponsor's CA.
	CA string `yaml:"ca"`
}

// The certificate authorities an identity can be bound to.
const (
	CASponsor = "sponsor"
	CATTP     = "ttp"
)

// RoleRule is what a role may do. "*" stands for every class.
type RoleRule struct {
	Tokenize []string          `yaml:"tokenize"`
	Reveal   map[string]Reveal `yaml:"reveal"`
	Purposes []string          `yaml:"purposes"`
	Admin    bool              `yaml:"admin"`
	// Budget bounds what the role's identities can extract; see
	// budget.Limits. For a role that reveals it counts tokens looked up
	// and distinct records; for a role that tokenizes, the items of
	// deterministic classes and their distinct values, because
	// tokenizing guesses of a deterministic class is extraction too. Nil
	// bounds nothing but the server's MaxBatch, and is refused for a role
	// that may tokenize a deterministic class (see CheckOracles).
	Budget *budget.Limits `yaml:"budget"`
}

// PurposeRule is a configured purpose of reveal.
type PurposeRule struct {
	Code            string   `yaml:"code"`
	Description     string   `yaml:"description"`
	Classes         []string `yaml:"classes"`
	CaseRefRequired bool     `yaml:"case_ref_required"`
}

// Policy is a validated policy, ready to answer questions. It is immutable.
type Policy struct {
	principals map[string]*Principal
	purposes   map[string]PurposeRule
	dual       DualControlRule
	roles      map[string]RoleRule
}

// Principal is what one identity may do, resolved from its roles.
type Principal struct {
	ID       string
	Tenants  []string
	tokenize map[string]bool   // class -> allowed; "*" for all
	reveal   map[string]Reveal // class -> level; "*" for all
	purposes map[string]bool
	Admin    bool
	// CA is the authority p's certificate must come from: CASponsor or
	// CATTP.
	CA string
	// Budget merges the budgets of p's roles with budget.Merge: each
	// bound is the tightest that any role sets, per window for distinct
	// bounds, and a bound no role sets is absent. Unlike reveal levels,
	// where the widest grant wins, a budget is never looser than any of
	// the roles that set it.
	Budget budget.Limits
}

// CanTokenize reports whether p may tokenize values of class.
func (p *Principal) CanTokenize(class string) bool { return p.tokenize[class] || p.tokenize["*"] }

// Tokenizes reports whether p may tokenize anything: a sponsor-side identity.
func (p *Principal) Tokenizes() bool { return len(p.tokenize) > 0 }

// Trusted reports whether p has any right on the trusted listener.
func (p *Principal) Trusted() bool { return len(p.reveal) > 0 || p.Admin }

// RevealLevel returns how much of class p may see.
func (p *Principal) RevealLevel(class string) Reveal {
	if r, ok := p.reveal[class]; ok {
		return r
	}
	return p.reveal["*"]
}

// HasTenant reports whether p's tokens live in, or p may read, tenant.
func (p *Principal) HasTenant(tenant string) bool { return slices.Contains(p.Tenants, tenant) }

// MayUsePurpose reports whether p may state purpose.
func (p *Principal) MayUsePurpose(purpose string) bool { return p.purposes[purpose] }

// Principal returns the principal for a certificate identity.
func (pol *Policy) Principal(id string) (*Principal, bool) {
	p, ok := pol.principals[id]
	return p, ok
}

// Purpose returns a configured purpose.
func (pol *Policy) Purpose(code string) (PurposeRule, bool) {
	p, ok := pol.purposes[code]
	return p, ok
}

// PurposeCovers reports whether purpose allows revealing class.
func (r PurposeRule) Covers(class string) bool {
	return slices.Contains(r.Classes, class) || slices.Contains(r.Classes, "*")
}

// Unbounded returns, sorted, the identities that may reveal but have no
// distinct-records budget: nothing but MaxBatch bounds what they extract.
func (pol *Policy) Unbounded() []string {
	var out []string
	for id, p := range pol.principals {
		if len(p.reveal) > 0 && p.Budget.Distinct == 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Tenants returns every tenant the policy names, sorted.
func (pol *Policy) Tenants() []string {
	var out []string
	for _, p := range pol.principals {
		for _, t := range p.Tenants {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return out
}

// LoadPolicy reads and validates a YAML policy file.
func LoadPolicy(path string, classes []string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: policy: %w", err)
	}
	return ParsePolicy(b, classes)
}

// ParsePolicy parses and validates a YAML policy. classes are the configured
// field classes; naming any other is an error. Errors name the bad field.
func ParsePolicy(b []byte, classes []string) (*Policy, error) {
	var f PolicyFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("server: policy: %w", err)
	}
	return NewPolicy(f, classes)
}

// NewPolicy validates f. An identity may tokenize or act on the trusted
// side, never both, so that no sponsor identity can ever reveal a value.
func NewPolicy(f PolicyFile, classes []string) (*Policy, error) {
	knownClass := func(c string) bool { return c == "*" || slices.Contains(classes, c) }
	pol := &Policy{principals: map[string]*Principal{}, purposes: map[string]PurposeRule{}, roles: f.Roles}
	var err error
	if pol.dual, err = f.DualControl.resolve(); err != nil {
		return nil, err
	}
	for i, pr := range f.Purposes {
		if !tokenizer.ValidName(pr.Code) {
			return nil, fmt.Errorf("server: policy: purposes[%d].code %q must be a-z, 0-9 and '-'", i, pr.Code)
		}
		if _, dup := pol.purposes[pr.Code]; dup {
			return nil, fmt.Errorf("server: policy: purposes[%d].code %q is defined twice", i, pr.Code)
		}
		if len(pr.Classes) == 0 {
			return nil, fmt.Errorf("server: policy: purposes[%d].classes must name at least one class or \"*\"", i)
		}
		for _, c := range pr.Classes {
			if !knownClass(c) {
				return nil, fmt.Errorf("server: policy: purposes[%d].classes: unknown class %q", i, c)
			}
		}
		pol.purposes[pr.Code] = pr
	}
	for name, r := range f.Roles {
		for _, c := range r.Tokenize {
			if !knownClass(c) {
				return nil, fmt.Errorf("server: policy: roles.%s.tokenize: unknown class %q", name, c)
			}
		}
		for c, lvl := range r.Reveal {
			if !knownClass(c) {
				return nil, fmt.Errorf("server: policy: roles.%s.reveal: unknown class %q", name, c)
			}
			if lvl != RevealFull && lvl != RevealMasked {
				return nil, fmt.Errorf("server: policy: roles.%s.reveal.%s must be %q or %q", name, c, RevealFull, RevealMasked)
			}
		}
		for _, p := range r.Purposes {
			if _, ok := pol.purposes[p]; !ok {
				return nil, fmt.Errorf("server: policy: roles.%s.purposes: unknown purpose %q", name, p)
			}
		}
		if len(r.Reveal) > 0 && len(r.Purposes) == 0 {
			return nil, fmt.Errorf("server: policy: roles.%s.purposes must name at least one purpose for a role that reveals", name)
		}
		if r.Budget != nil {
			if err := r.Budget.Validate(); err != nil {
				// "budget: burst must ..." reads as the field's path.
				return nil, fmt.Errorf("server: policy: roles.%s.%w", name, err)
			}
		}
	}
	for i, id := range f.Identities {
		if id.ID == "" {
			return nil, fmt.Errorf("server: policy: identities[%d].id is empty", i)
		}
		if _, dup := pol.principals[id.ID]; dup {
			return nil, fmt.Errorf("server: policy: identities[%d].id %q is defined twice", i, id.ID)
		}
		p := &Principal{ID: id.ID, Tenants: id.Tenants, tokenize: map[string]bool{}, reveal: map[string]Reveal{}, purposes: map[string]bool{}}
		for _, t := range id.Tenants {
			if !tokenizer.ValidName(t) {
				return nil, fmt.Errorf("server: policy: identities[%d].tenants: %q must be a-z, 0-9 and '-'", i, t)
			}
		}
		if len(id.Roles) == 0 {
			return nil, fmt.Errorf("server: policy: identities[%d].roles is empty", i)
		}
		for _, rn := range id.Roles {
			r, ok := f.Roles[rn]
			if !ok {
				return nil, fmt.Errorf("server: policy: identities[%d].roles: unknown role %q", i, rn)
			}
			for _, c := range r.Tokenize {
				p.tokenize[c] = true
			}
			for c, lvl := range r.Reveal {
				if p.reveal[c] != RevealFull { // the widest grant wins
					p.reveal[c] = lvl
				}
			}
			for _, pu := range r.Purposes {
				p.purposes[pu] = true
			}
			p.Admin = p.Admin || r.Admin
			if r.Budget != nil {
				p.Budget = budget.Merge(p.Budget, *r.Budget)
			}
		}
		if err := p.Budget.Validate(); err != nil {
			return nil, fmt.Errorf("server: policy: identities[%d].roles: the merged %w", i, err)
		}
		if p.Tokenizes() && p.Trusted() {
			return nil, fmt.Errorf("server: policy: identities[%d] (%s) may both tokenize and reveal or administer; give the sponsor side and the trusted side separate identities", i, id.ID)
		}
		if len(p.reveal) > 0 && p.Admin {
			// A custodian who could also reveal could lift its own
			// suspension's cause, erase the trail of what it read, or act
			// while suspended: keep the two apart.
			return nil, fmt.Errorf("server: policy: identities[%d] (%s) may both reveal and administer; give custodians identities of their own", i, id.ID)
		}
		if p.Tokenizes() && len(p.Tenants) != 1 {
			return nil, fmt.Errorf("server: policy: identities[%d].tenants must name exactly one tenant for an identity that tokenizes", i)
		}
		if len(p.reveal) > 0 && len(p.Tenants) == 0 {
			return nil, fmt.Errorf("server: policy: identities[%d].tenants must name the tenants it may reveal", i)
		}
		switch {
		case id.CA == "" && p.Trusted():
			p.CA = CATTP
		case id.CA == "":
			p.CA = CASponsor
		case id.CA == CASponsor && p.Trusted():
			return nil, fmt.Errorf("server: policy: identities[%d].ca: %s reveals or administers, so its certificate must come from the %q CA, never the sponsor's", i, id.ID, CATTP)
		case id.CA == CASponsor, id.CA == CATTP:
			p.CA = id.CA
		default:
			return nil, fmt.Errorf("server: policy: identities[%d].ca %q must be %q or %q", i, id.CA, CASponsor, CATTP)
		}
		pol.principals[id.ID] = p
	}
	if len(pol.principals) == 0 {
		return nil, errors.New("server: policy: no identities")
	}
	return pol, nil
}

// CheckOracles refuses a policy that lets a role tokenize a deterministic
// class without a distinct budget: equal values give equal tokens, so
// tokenizing guesses and comparing the tokens with one already held
// recovers the value, and only a budget of distinct values per window
// bounds how many guesses a sponsor gets. The error names the role and
// the class. classes are the configured classes.
func (pol *Policy) CheckOracles(classes []tokenizer.Class) error {
	for _, name := range slices.Sorted(maps.Keys(pol.roles)) {
		r := pol.roles[name]
		if r.Budget != nil && r.Budget.Distinct > 0 {
			continue
		}
		for _, c := range classes {
			if c.Kind != tokenizer.KindDeterministic || !slices.Contains(r.Tokenize, c.Name) && !slices.Contains(r.Tokenize, "*") {
				continue
			}
			return fmt.Errorf("server: policy: roles.%s may tokenize the deterministic class %s but its budget sets no distinct: "+
				"tokenizing guesses would recover values without bound; set budget.distinct (values per window)", name, c.Name)
		}
	}
	return nil
}
