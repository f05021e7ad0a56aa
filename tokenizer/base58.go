package tokenizer

// base58Alphabet is the Bitcoin alphabet: no 0, O, I or l, so a token read
// aloud or retyped is unambiguous.
const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var base58Index = func() (idx [256]int8) {
	for i := range idx {
		idx[i] = -1
	}
	for i := 0; i < len(base58Alphabet); i++ {
		idx[base58Alphabet[i]] = int8(i)
	}
	return idx
}()

// appendBase58 appends the base58 form of b to dst. Leading zero bytes are
// written as '1', as in Bitcoin's encoding.
//
// It works in limbs of five base-58 digits (58^5 < 2^30), which takes a
// fifth of the divisions of the digit-at-a-time method, and takes in the
// input four bytes at a time (a limb shifted by 32 bits plus a carry below
// 2^34 stays below 2^63), a quarter of the passes over the limbs of the
// byte-at-a-time one; tokens are encoded on every tokenization.
func appendBase58(dst, b []byte) []byte {
	const limb = 58 * 58 * 58 * 58 * 58
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	var stack [16]uint32
	limbs := stack[:0] // little end first
	if n := (len(b)*137/100)/5 + 2; n > len(stack) {
		limbs = make([]uint32, 0, n)
	}
	for rest := b[zeros:]; len(rest) > 0; {
		// A partial chunk can only come first, when there are no limbs
		// yet to shift: every later one is four bytes.
		k := (len(rest)-1)%4 + 1
		var carry uint64
		for _, c := range rest[:k] {
			carry = carry<<8 | uint64(c)
		}
		rest = rest[k:]
		for i := range limbs {
			x := uint64(limbs[i])<<32 + carry
			limbs[i] = uint32(x % limb)
			carry = x / limb
		}
		for carry > 0 {
			limbs = append(limbs, uint32(carry%limb))
			carry /= limb
		}
	}
	for range zeros {
		dst = append(dst, '1')
	}
	var dstack [80]byte
	digits := dstack[:]
	if len(limbs)*5 > len(digits) {
		digits = make([]byte, len(limbs)*5)
	}
	n := 0
	for _, l := range limbs {
		for range 5 {
			digits[n] = byte(l % 58)
			l /= 58
			n++
		}
	}
	for n > 0 && digits[n-1] == 0 {
		n--
	}
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, base58Alphabet[digits[i]])
	}
	return dst
}

// decodeBase58 decodes s into out, which must be exactly the decoded length.
// It reports false for a character outside the alphabet or a length mismatch.
func decodeBase58(s string, out []byte) bool {
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	var stack [64]byte
	buf := stack[:0] // base-256 digits, little end first
	for i := zeros; i < len(s); i++ {
		v := base58Index[s[i]]
		if v < 0 {
			return false
		}
		carry := int(v)
		for j := range buf {
			carry += int(buf[j]) * 58
			buf[j] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			if zeros+len(buf) >= len(out) {
				return false
			}
			buf = append(buf, byte(carry))
			carry >>= 8
		}
	}
	if zeros+len(buf) != len(out) {
		return false
	}
	for i := range zeros {
		out[i] = 0
	}
	for i, c := range buf {
		out[len(out)-1-i] = c
	}
	return true
}
