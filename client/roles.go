package client

// Sponsor tokenizes, on jeton's public listener. It has no call that
// returns a value: a sponsor application holds tokens only.
type Sponsor struct{ *core }

// NewSponsor returns a Sponsor for target, the public listener. It does
// not connect: the connection is made on the first call, so a server that
// is down shows up as ErrUnavailable from that call, not from NewSponsor.
// It fails when an option is invalid, e.g. a TLS file that cannot be read.
func NewSponsor(target string, opts ...Option) (*Sponsor, error) {
	c, err := dial(target, opts)
	if err != nil {
		return nil, err
	}
	return &Sponsor{c}, nil
}

// Revealer reveals values, on jeton's trusted listener: TTP applications
// and state systems. Every call states a purpose and is audited.
type Revealer struct{ *core }

// NewRevealer returns a Revealer for target, the trusted listener. Like
// NewSponsor it does not connect.
func NewRevealer(target string, opts ...Option) (*Revealer, error) {
	c, err := dial(target, opts)
	if err != nil {
		return nil, err
	}
	return &Revealer{c}, nil
}

// Custodian runs key custodians' operations, on jeton's trusted listener:
// erasure, purges, key generations, canaries and stats. The server refuses
// them to any identity that is not a custodian.
type Custodian struct{ *core }

// NewCustodian returns a Custodian for target, the trusted listener. Like
// NewSponsor it does not connect.
func NewCustodian(target string, opts ...Option) (*Custodian, error) {
	c, err := dial(target, opts)
	if err != nil {
		return nil, err
	}
	return &Custodian{c}, nil
}
