package telemetry

import (
	"bytes"
	"encoding/json"
	"math"
	"unicode/utf8"
)

// cursor walks JSON that json.Valid has already accepted, so it does not
// diagnose syntax; it only finds values. It still checks every index: a flaw
// in that trust must fail one message, never panic the ingest goroutine.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) ws() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *cursor) peek() byte {
	if c.i < len(c.b) {
		return c.b[c.i]
	}
	return 0
}

// str consumes the string at the cursor and returns the bytes between its
// quotes. plain reports that those bytes are the string's value as they
// stand: no escapes and valid UTF-8. Anything else goes through unquote.
func (c *cursor) str() (raw []byte, plain, ok bool) {
	start := c.i + 1
	if !c.skipString() {
		return nil, false, false
	}
	raw = c.b[start : c.i-1]
	return raw, bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw), true
}

// skipString consumes the string at the cursor. Keys and ids are a dozen
// bytes, too short for bytes.IndexByte to pay off: a leap to each quote and
// a look back over backslashes measured no faster than this loop.
func (c *cursor) skipString() bool {
	if c.peek() != '"' {
		return false
	}
	for j := c.i + 1; j < len(c.b); j++ {
		switch c.b[j] {
		case '"':
			c.i = j + 1
			return true
		case '\\':
			j++ // the escaped byte may be a quote; \uXXXX's hex digits never are
		}
	}
	return false
}

// unquote decodes a JSON string token (with its quotes) exactly as
// encoding/json does, invalid UTF-8 becoming U+FFFD. It allocates, which is
// fine: gateways rarely escape anything in ids.
func unquote(tok []byte) ([]byte, bool) {
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return nil, false
	}
	return []byte(s), true
}

// strValue returns the value of the string at the cursor.
func (c *cursor) strValue() ([]byte, bool) {
	start := c.i
	raw, plain, ok := c.str()
	if !ok {
		return nil, false
	}
	if plain {
		return raw, true
	}
	return unquote(c.b[start:c.i])
}

// structural marks the bytes a container skip must stop at.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// skip consumes one value of any type.
func (c *cursor) skip() bool {
	switch c.peek() {
	case '"':
		return c.skipString()
	case '{', '[':
		// Iterative, so that deeply nested unknown fields cost no stack.
		depth := 0
		for c.i < len(c.b) {
			switch c.b[c.i] {
			case '"':
				if !c.skipString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					c.i++
					return true
				}
			}
			c.i++
			for c.i < len(c.b) && !structural[c.b[c.i]] {
				c.i++
			}
		}
		return false
	}
	start := c.i
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return c.i > start
		}
		c.i++
	}
	return c.i > start
}

// enter consumes the opening bracket of an object or array.
func (c *cursor) enter(open byte) bool {
	c.ws()
	if c.peek() != open {
		return false
	}
	c.i++
	return true
}

// member moves to the next member of an object that enter('{') opened and
// returns its key, leaving the cursor on the value, which the caller must
// consume. more is false once the closing brace is consumed.
func (c *cursor) member() (key []byte, plainKey, more, ok bool) {
	c.ws()
	switch c.peek() {
	case '}':
		c.i++
		return nil, false, false, true
	case ',':
		c.i++
		c.ws()
	}
	start := c.i
	key, plainKey, ok = c.str()
	if !ok {
		return nil, false, false, false
	}
	if !plainKey {
		key, ok = unquote(c.b[start:c.i])
		if !ok {
			return nil, false, false, false
		}
	}
	c.ws()
	if c.peek() != ':' {
		return nil, false, false, false
	}
	c.i++
	c.ws()
	return key, plainKey, true, true
}

// element moves to the next element of an array that enter('[') opened.
func (c *cursor) element() (more bool) {
	c.ws()
	switch c.peek() {
	case ']':
		c.i++
		return false
	case ',':
		c.i++
		c.ws()
	}
	return c.i < len(c.b)
}

// span is where a value lies in the payload; a zero span is an absent field.
type span struct{ start, end int }

func (s span) present() bool { return s.end > s.start }

// valueSpan consumes the value at the cursor and returns where it lies.
func (c *cursor) valueSpan() (span, bool) {
	start := c.i
	if !c.skip() {
		return span{}, false
	}
	return span{start, c.i}, true
}

// at returns a cursor on the value s.
func at(b []byte, s span) cursor {
	return cursor{b: b[:s.end], i: s.start}
}

// integral parses a JSON number token whose value is an integer, in any of
// the notations JSON allows ("1732442400123", "1.732442400123e12",
// "1732442400123.0"): gateways written in languages whose numbers are all
// floats write integers like that, and the value is what counts. It returns
// the magnitude and sign; ok is false when the value is not an integer or its
// magnitude does not fit in a uint64.
func integral(tok []byte) (mag uint64, neg, ok bool) {
	i := 0
	if i < len(tok) && tok[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	for i < len(tok) && isDigit(tok[i]) {
		i++
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(tok) && tok[i] == '.' {
		i++
		fracStart = i
		for i < len(tok) && isDigit(tok[i]) {
			i++
		}
		fracEnd = i
	}
	exp := 0
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		i++
		expNeg := false
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			expNeg = tok[i] == '-'
			i++
		}
		for i < len(tok) && isDigit(tok[i]) {
			// Saturate: past a billion the answer no longer depends on it,
			// since no payload holds a billion digits.
			if exp < 1e9 {
				exp = exp*10 + int(tok[i]-'0')
			}
			i++
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(tok) || intEnd == intStart {
		return 0, false, false
	}
	nInt, nDigits := intEnd-intStart, intEnd-intStart+fracEnd-fracStart
	digit := func(p int) byte { // p-th significant-or-not digit, ignoring the point
		if p < nInt {
			return tok[intStart+p]
		}
		return tok[fracStart+p-nInt]
	}
	first, last := 0, nDigits-1
	for first < nDigits && digit(first) == '0' {
		first++
	}
	if first == nDigits {
		return 0, neg, true
	}
	for digit(last) == '0' {
		last--
	}
	// The last nonzero digit weighs 10^scale.
	scale := nInt - 1 - last + exp
	if scale < 0 || last-first+1+scale > 20 {
		return 0, false, false
	}
	for p := first; p <= last; p++ {
		d := uint64(digit(p) - '0')
		if mag > (math.MaxUint64-d)/10 {
			return 0, false, false
		}
		mag = mag*10 + d
	}
	for ; scale > 0; scale-- {
		if mag > math.MaxUint64/10 {
			return 0, false, false
		}
		mag *= 10
	}
	return mag, neg, true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// int64Of gives the int64 value of an integral token.
func int64Of(tok []byte) (int64, bool) {
	mag, neg, ok := integral(tok)
	switch {
	case !ok:
		return 0, false
	case neg && mag <= 1<<63:
		return int64(-mag), true // -(1<<63) wraps to itself, which is right
	case !neg && mag < 1<<63:
		return int64(mag), true
	}
	return 0, false
}
