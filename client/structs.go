package client

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
)

// Struct tags
//
// TokenizeStruct and DetokenizeStruct read `jeton` struct tags:
//
//	type Guest struct {
//		ID     string   `jeton:",subject"`          // the data subject; not tokenized
//		Email  string   `jeton:"email"`             // tokenized as class email
//		Phone  *string  `jeton:"phone,omitempty"`   // nil or empty: left alone
//		Names  []string `jeton:"name"`              // every element
//		Home   Address                              // nested: its tags apply too
//		Badge  int                                  // untagged: left alone
//	}
//
// The tag is the class name, then options:
//   - omitempty: an empty value is left empty instead of being sent (and
//     rejected by the server as empty).
//   - subject: the field's value names the data subject of every value
//     tokenized in this struct and the structs nested in it (unless one
//     has its own subject field), so that they can be erased together.
//     With an empty class (`jeton:",subject"`) the field is only the
//     subject; with a class it is also tokenized, and the subject is its
//     value as it was before.
//
// A tag "-" skips the field. Tagged fields are strings (or types whose
// underlying type is string), pointers to them, or slices of them.
// Untagged exported fields that are structs, pointers to structs, or
// slices of either are walked into. A tag on any other type is an error
// naming the field, reported before anything is sent.

// FieldError is the failure of one tagged field. Record is the index of
// the struct in the slice given to TokenizeStructs or DetokenizeStructs
// (0 for the single-struct calls); Field is its path, e.g. "Home.Phone"
// or "Names[2]". Err is the item's *ItemError.
type FieldError struct {
	Record int
	Field  string
	Err    error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("client: record %d field %s: %v", e.Record, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// StructError lists the fields that could not be tokenized or revealed;
// they keep their previous content. The others were replaced.
type StructError struct {
	Fields []*FieldError
}

func (e *StructError) Error() string {
	if len(e.Fields) == 1 {
		return e.Fields[0].Error()
	}
	return fmt.Sprintf("%v (and %d more fields)", e.Fields[0], len(e.Fields)-1)
}

// Unwrap lets errors.Is match the sentinel of any failed field.
func (e *StructError) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}

// TokenizeStruct replaces the tagged fields of the struct v points to with
// their tokens, in one batched call (chunked above the batch size). On an
// error, fields that failed keep their value: do not store the struct
// then. A failed call returns an *Error, after replacing the fields of the
// chunks that succeeded; failed items return a *StructError.
func (c *Sponsor) TokenizeStruct(ctx context.Context, v any) error {
	return c.TokenizeStructs(ctx, []any{v})
}

// TokenizeStructs is TokenizeStruct for many structs at once, in one
// batched call for all of them: recs is a slice of structs, of pointers
// to structs, or of any holding pointers to structs.
func (c *Sponsor) TokenizeStructs(ctx context.Context, recs any) error {
	slots, err := collect(recs)
	if err != nil || len(slots) == 0 {
		return err
	}
	items := make([]Item, len(slots))
	for i, s := range slots {
		items[i] = Item{Class: s.class, Value: s.v.String(), Subject: s.subject}
	}
	key, err := newIdempotencyKey()
	if err != nil {
		return err
	}
	res, callErr := c.tokenize(ctx, key, items)
	var failed []*FieldError
	for i, r := range res {
		if r.Err != nil {
			failed = append(failed, slots[i].fail(r.Err))
			continue
		}
		slots[i].v.SetString(r.Token)
	}
	return structResult(callErr, failed)
}

// DetokenizeStruct replaces the tagged fields of the struct v points to,
// which hold tokens, with their values, in one batched, audited call under
// purpose and caseRef. A field is replaced by the masked form when that is
// all the caller's policy allows; use Detokenize to tell. A token of
// another class than the field's tag is not revealed into it: the field
// fails. Errors are as for TokenizeStruct.
func (c *Revealer) DetokenizeStruct(ctx context.Context, v any, purpose, caseRef string) error {
	return c.DetokenizeStructs(ctx, []any{v}, purpose, caseRef)
}

// DetokenizeStructs is DetokenizeStruct for many structs at once, in one
// batched call for all of them; recs is as for TokenizeStructs.
func (c *Revealer) DetokenizeStructs(ctx context.Context, recs any, purpose, caseRef string) error {
	slots, err := collect(recs)
	if err != nil || len(slots) == 0 {
		return err
	}
	tokens := make([]string, len(slots))
	for i, s := range slots {
		tokens[i] = s.v.String()
	}
	res, callErr := c.Detokenize(ctx, tokens, purpose, caseRef)
	var failed []*FieldError
	for i, r := range res {
		s := slots[i]
		switch {
		case r.Err != nil:
			failed = append(failed, s.fail(r.Err))
		case s.class != "" && r.Class != s.class:
			failed = append(failed, s.fail(&ItemError{Index: i, Code: codes.InvalidArgument,
				Message: fmt.Sprintf("token is of class %s, the field's tag says %s", r.Class, s.class)}))
		default:
			s.v.SetString(r.Value)
		}
	}
	return structResult(callErr, failed)
}

func structResult(callErr error, failed []*FieldError) error {
	if callErr != nil {
		return callErr
	}
	if len(failed) > 0 {
		return &StructError{Fields: failed}
	}
	return nil
}

// slot is one tagged string to replace.
type slot struct {
	v       reflect.Value // settable string
	class   string
	subject string
	record  int
	path    string
}

func (s slot) fail(err error) *FieldError {
	return &FieldError{Record: s.record, Field: s.path, Err: err}
}

// collect walks recs (a slice) or a single pointer wrapped in []any, and
// returns the tagged strings in a stable order.
func collect(recs any) ([]slot, error) {
	rv := reflect.ValueOf(recs)
	if rv.Kind() != reflect.Slice {
		return nil, fmt.Errorf("client: want a slice of structs or of pointers to structs, got %T: %w", recs, ErrInvalidArgument)
	}
	var out []slot
	for i := range rv.Len() {
		v := rv.Index(i)
		if v.Kind() == reflect.Interface {
			v = v.Elem()
		}
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return nil, fmt.Errorf("client: record %d is a nil pointer: %w", i, ErrInvalidArgument)
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct || !v.CanSet() {
			return nil, fmt.Errorf("client: record %d: want a pointer to a struct (or a slice of structs), got %s: %w", i, describe(rv.Index(i)), ErrInvalidArgument)
		}
		info, err := structInfoOf(v.Type())
		if err != nil {
			return nil, err
		}
		out = info.collect(v, "", i, "", out)
	}
	return out, nil
}

func describe(v reflect.Value) string {
	if v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	return v.Type().String()
}

// fieldKind is how a field is walked.
type fieldKind int

const (
	kindString      fieldKind = iota // string
	kindStringPtr                    // *string
	kindStringSlice                  // []string
	kindStruct                       // struct
	kindStructPtr                    // *struct
	kindStructSlice                  // []struct or []*struct
)

type fieldInfo struct {
	index     int
	name      string
	class     string // "" for a subject-only field or a nested struct
	omitempty bool
	subject   bool
	kind      fieldKind
	elemPtr   bool        // kindStructSlice of pointers
	elem      *structInfo // for the struct kinds
}

type structInfo struct {
	fields  []fieldInfo
	subject int // index in fields of the subject field, or -1
	// tagged is whether the struct itself has a tagged field; deep
	// whether it or a struct nested in it has, so that untagged structs
	// (time.Time, ...) are not walked for nothing.
	tagged, deep bool
}

// structCache holds the reflection metadata per type, computed once.
var structCache sync.Map // reflect.Type -> *structInfo

func structInfoOf(t reflect.Type) (*structInfo, error) {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo), nil
	}
	building := map[reflect.Type]*structInfo{}
	si, err := buildInfo(t, building)
	if err != nil {
		return nil, err
	}
	for _, b := range building {
		b.deep = b.hasTags(map[*structInfo]bool{})
	}
	for bt, b := range building {
		structCache.LoadOrStore(bt, b)
	}
	return si, nil
}

// buildInfo compiles t's tags; building breaks cycles (type Node struct
// { Next *Node }).
func buildInfo(t reflect.Type, building map[reflect.Type]*structInfo) (*structInfo, error) {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo), nil
	}
	if si, ok := building[t]; ok {
		return si, nil
	}
	si := &structInfo{subject: -1}
	building[t] = si
	for i := range t.NumField() {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("jeton")
		if tag == "-" || (!f.IsExported() && !hasTag) {
			continue
		}
		name := t.Name() + "." + f.Name
		if !f.IsExported() {
			return nil, fmt.Errorf("client: field %s: a jeton tag on an unexported field cannot be set", name)
		}
		fi := fieldInfo{index: i, name: f.Name}
		if hasTag {
			class, opts, _ := strings.Cut(tag, ",")
			fi.class = class
			for o := range strings.SplitSeq(opts, ",") {
				switch o {
				case "":
				case "omitempty":
					fi.omitempty = true
				case "subject":
					fi.subject = true
				default:
					return nil, fmt.Errorf("client: field %s: unknown jeton tag option %q (want omitempty or subject)", name, o)
				}
			}
			if class == "" && !fi.subject {
				return nil, fmt.Errorf("client: field %s: the jeton tag names no class", name)
			}
		}
		ft := f.Type
		switch {
		case ft.Kind() == reflect.String:
			fi.kind = kindString
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.String:
			fi.kind = kindStringPtr
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			fi.kind = kindStringSlice
		case ft.Kind() == reflect.Struct:
			fi.kind = kindStruct
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
			fi.kind, ft = kindStructPtr, ft.Elem()
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			fi.kind, ft = kindStructSlice, ft.Elem()
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Pointer && ft.Elem().Elem().Kind() == reflect.Struct:
			fi.kind, fi.elemPtr, ft = kindStructSlice, true, ft.Elem().Elem()
		default:
			if hasTag {
				return nil, fmt.Errorf("client: field %s: a jeton tag on type %s is not supported (string, *string, []string)", name, f.Type)
			}
			continue
		}
		switch fi.kind {
		case kindStruct, kindStructPtr, kindStructSlice:
			if hasTag {
				return nil, fmt.Errorf("client: field %s: a jeton tag on struct type %s is not supported: tag its string fields", name, f.Type)
			}
			elem, err := buildInfo(ft, building)
			if err != nil {
				return nil, err
			}
			fi.elem = elem
		default:
			if !hasTag {
				continue
			}
			if fi.subject && fi.kind != kindString {
				return nil, fmt.Errorf("client: field %s: the subject field must be a string", name)
			}
			if fi.subject {
				if si.subject >= 0 {
					return nil, fmt.Errorf("client: field %s: %s has two subject fields", name, t.Name())
				}
				si.subject = len(si.fields)
			}
			si.tagged = true
		}
		si.fields = append(si.fields, fi)
	}
	return si, nil
}

// hasTags reports whether walking si can find a tagged field.
func (si *structInfo) hasTags(seen map[*structInfo]bool) bool {
	if si.tagged {
		return true
	}
	if seen[si] {
		return false
	}
	seen[si] = true
	for _, f := range si.fields {
		if f.elem != nil && f.elem.hasTags(seen) {
			return true
		}
	}
	return false
}

// collect appends v's tagged strings to out. subject is the enclosing
// struct's subject; prefix the path of v.
func (si *structInfo) collect(v reflect.Value, subject string, record int, prefix string, out []slot) []slot {
	if si.subject >= 0 {
		subject = v.Field(si.fields[si.subject].index).String()
	}
	for _, f := range si.fields {
		fv := v.Field(f.index)
		path := prefix + f.name
		add := func(sv reflect.Value, path string) {
			if f.class == "" || (f.omitempty && sv.Len() == 0) {
				return
			}
			out = append(out, slot{v: sv, class: f.class, subject: subject, record: record, path: path})
		}
		switch f.kind {
		case kindString:
			add(fv, path)
		case kindStringPtr:
			if !fv.IsNil() {
				add(fv.Elem(), path)
			}
		case kindStringSlice:
			for i := range fv.Len() {
				add(fv.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case kindStruct:
			if f.elem.deep {
				out = f.elem.collect(fv, subject, record, path+".", out)
			}
		case kindStructPtr:
			if !fv.IsNil() && f.elem.deep {
				out = f.elem.collect(fv.Elem(), subject, record, path+".", out)
			}
		case kindStructSlice:
			if !f.elem.deep {
				continue
			}
			for i := range fv.Len() {
				ev := fv.Index(i)
				if f.elemPtr {
					if ev.IsNil() {
						continue
					}
					ev = ev.Elem()
				}
				out = f.elem.collect(ev, subject, record, fmt.Sprintf("%s[%d].", path, i), out)
			}
		}
	}
	return out
}
