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
func appendBase58(dst, b []byte) []byte {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	// log(256)/log(58) < 1.37; the buffer holds base-58 digits, little end first.
	var stack [64]byte
	buf := stack[:0]
	if n := len(b)*137/100 + 1; n > len(stack) {
		buf = make([]byte, 0, n)
	}
	for _, c := range b[zeros:] {
		carry := int(c)
		for i := range buf {
			carry += int(buf[i]) << 8
			buf[i] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			buf = append(buf, byte(carry%58))
			carry /= 58
		}
	}
	for range zeros {
		dst = append(dst, '1')
	}
	for i := len(buf) - 1; i >= 0; i-- {
		dst = append(dst, base58Alphabet[buf[i]])
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
