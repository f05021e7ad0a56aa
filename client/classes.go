package client

// Names of the field classes jetond configures by default. A deployment
// may configure others; any class name the server knows can be used as a
// plain string.
const (
	ClassEmail     = "email"
	ClassPhone     = "phone"
	ClassName      = "name"
	ClassPassport  = "passport"
	ClassBirthdate = "birthdate"
	ClassAddress   = "address"
	ClassText      = "text"
)
