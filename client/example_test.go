package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/mail"
	"strings"
	"time"

	"github.com/jeton-dev/jeton/client"
)

func ExampleNew() {
	env, stop := startExampleServer()
	defer stop()

	// A sponsor application, on the public listener, with its own
	// certificate. New does not connect yet.
	c, err := client.New(env.publicAddr,
		client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey),
		client.WithTimeout(5*time.Second),
		client.WithRetry(3, 100*time.Millisecond),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	token, err := c.TokenizeValue(context.Background(), "email", "anne@example.org")
	if err != nil {
		log.Fatal(err)
	}
	// Store token where the email address used to be.
	fmt.Println("got a token:", token != "")
	// Output: got a token: true
}

func ExampleClient_Tokenize() {
	env, stop := startExampleServer()
	defer stop()
	c, err := client.New(env.publicAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	results, err := c.Tokenize(context.Background(), []client.Item{
		{Class: "email", Value: "anne@example.org", Subject: "guest-0001", Ref: "row-1"},
		{Class: "name", Value: "Anne Example", Subject: "guest-0001", Ref: "row-2"},
		{Class: "shoe-size", Value: "38", Subject: "guest-0001", Ref: "row-3"},
	})
	if err != nil {
		// The whole call failed: nothing to store.
		log.Fatal(err)
	}
	for _, r := range results {
		switch {
		case errors.Is(r.Err, client.ErrInvalidArgument):
			fmt.Println(r.Ref, "rejected: fix the input")
		case r.Err != nil:
			fmt.Println(r.Ref, "failed:", r.Err)
		default:
			fmt.Println(r.Ref, "tokenized")
		}
	}
	// Output:
	// row-1 tokenized
	// row-2 tokenized
	// row-3 rejected: fix the input
}

func ExampleClient_DetokenizeValue() {
	env, stop := startExampleServer()
	defer stop()
	ctx := context.Background()

	// The sponsor tokenizes on the public listener...
	sponsor, err := client.New(env.publicAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey))
	if err != nil {
		log.Fatal(err)
	}
	defer sponsor.Close()
	token, err := sponsor.TokenizeValue(ctx, "email", "anne@example.org")
	if err != nil {
		log.Fatal(err)
	}

	// ...and a vetting system on the TTP network reveals the value, stating
	// why and for which case.
	vetting, err := client.New(env.trustedAddr, client.WithTLSFiles(env.caFile, env.ttpCert, env.ttpKey))
	if err != nil {
		log.Fatal(err)
	}
	defer vetting.Close()
	email, err := vetting.DetokenizeValue(ctx, token, "vetting", "case-2031-0042")
	if errors.Is(err, client.ErrNotFound) {
		log.Fatal("unknown token, or not ours to reveal")
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(email)

	// The sponsor's listener has no Detokenizer at all.
	_, err = sponsor.DetokenizeValue(ctx, token, "vetting", "case-2031-0042")
	fmt.Println("sponsor can reveal:", err == nil)
	// Output:
	// anne@example.org
	// sponsor can reveal: false
}

// A sponsor application tokenizes its records in place: tagged fields are
// replaced by their tokens, in one batched call for all the records.
func ExampleSponsor_TokenizeStructs() {
	env, stop := startExampleServer()
	defer stop()
	sponsor, err := client.NewSponsor(env.publicAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey))
	if err != nil {
		log.Fatal(err)
	}
	defer sponsor.Close()

	type Guest struct {
		ID    string `jeton:",subject"` // erasable together, by this ID
		Email string `jeton:"email"`
		Phone string `jeton:"phone,omitempty"`
		Name  string `jeton:"name"`
		Role  string // not personal: left alone
	}
	guests := []Guest{
		{ID: "guest-0001", Email: "anne@example.org", Phone: "+33 6 00 00 00 01", Name: "Anne Example", Role: "press"},
		{ID: "guest-0002", Email: "bob@example.org", Name: "Bob Example", Role: "official"},
	}
	if err := sponsor.TokenizeStructs(context.Background(), guests); err != nil {
		log.Fatal(err) // do not store the records
	}
	for _, g := range guests {
		fmt.Println(g.ID, strings.HasPrefix(g.Email, "tok_email_"), strings.HasPrefix(g.Name, "tok_name_"), g.Phone != "", g.Role)
	}
	// Output:
	// guest-0001 true true true press
	// guest-0002 true true false official
}

// A state system reveals a record's tagged fields in place, stating why.
func ExampleRevealer_DetokenizeStruct() {
	env, stop := startExampleServer()
	defer stop()
	ctx := context.Background()
	sponsor, err := client.NewSponsor(env.publicAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey))
	if err != nil {
		log.Fatal(err)
	}
	defer sponsor.Close()

	type Guest struct {
		Email string `jeton:"email"`
		Name  string `jeton:"name"`
	}
	g := Guest{Email: "anne@example.org", Name: "Anne Example"}
	if err := sponsor.TokenizeStruct(ctx, &g); err != nil {
		log.Fatal(err)
	}
	// g now holds tokens only: this is what the sponsor stores.

	vetting, err := client.NewRevealer(env.trustedAddr, client.WithTLSFiles(env.caFile, env.ttpCert, env.ttpKey))
	if err != nil {
		log.Fatal(err)
	}
	defer vetting.Close()
	if err := vetting.DetokenizeStruct(ctx, &g, "vetting", "case-2031-0042"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(g.Email, "/", g.Name)
	// Output: anne@example.org / Anne Example
}

// A class can mint tokens in its values' own format, for a sponsor schema
// that validates formats (README "Token shapes"): here an email-shaped
// class and a digit-shaped one that keeps the last two digits. Nothing
// changes for the client: the tokens are strings like any other.
func ExampleSponsor_TokenizeStruct_formatPreserving() {
	env, stop := startExampleServer()
	defer stop()
	ctx := context.Background()
	sponsor, err := client.NewSponsor(env.publicAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey))
	if err != nil {
		log.Fatal(err)
	}
	defer sponsor.Close()

	type Badge struct {
		Contact string `jeton:"contact-email"`
		Number  string `jeton:"badge"`
	}
	b := Badge{Contact: "anne@example.org", Number: "0600000042"}
	if err := sponsor.TokenizeStruct(ctx, &b); err != nil {
		log.Fatal(err)
	}
	addr, err := mail.ParseAddress(b.Contact)
	fmt.Println(err == nil && addr.Address == b.Contact, strings.HasSuffix(b.Contact, "@tok.jeton.invalid"))
	fmt.Println(len(b.Number), strings.HasPrefix(b.Number, "9"), strings.HasSuffix(b.Number, "42"))

	vetting, err := client.NewRevealer(env.trustedAddr, client.WithTLSFiles(env.caFile, env.ttpCert, env.ttpKey))
	if err != nil {
		log.Fatal(err)
	}
	defer vetting.Close()
	if err := vetting.DetokenizeStruct(ctx, &b, "vetting", "case-2031-0043"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.Contact, b.Number)
	// Output:
	// true true
	// 10 true true
	// anne@example.org 0600000042
}
