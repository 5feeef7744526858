package http1

// Byte classes, looked up in one table instead of regexes or chains of
// comparisons.
const (
	cToken   uint8 = 1 << iota // tchar (RFC 9110 5.6.2)
	cField                     // field-vchar: VCHAR / obs-text (RFC 9110 5.5)
	cTarget                    // allowed in a request-target: VCHAR except '#'
	cHex                       // HEXDIG
	cRegName                   // reg-name without percent-escapes: unreserved / sub-delims
	cDigit                     // DIGIT
	cQDText                    // qdtext of a quoted-string (RFC 9110 5.6.4)
)

var class = buildClasses()

func buildClasses() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		isAlpha := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
		isDigit := '0' <= b && b <= '9'
		if isAlpha || isDigit || contains("!#$%&'*+-.^_`|~", b) {
			t[c] |= cToken
		}
		if 0x21 <= b && b <= 0x7e || b >= 0x80 {
			t[c] |= cField
		}
		if 0x21 <= b && b <= 0x7e && b != '#' {
			t[c] |= cTarget
		}
		if isDigit || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F' {
			t[c] |= cHex
		}
		if isAlpha || isDigit || contains("-._~!$&'()*+,;=", b) {
			t[c] |= cRegName
		}
		if isDigit {
			t[c] |= cDigit
		}
		if b == '\t' || b == ' ' || b == 0x21 || 0x23 <= b && b <= 0x5b || 0x5d <= b && b <= 0x7e || b >= 0x80 {
			t[c] |= cQDText
		}
	}
	return t
}

func contains(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

func isOWS(b byte) bool { return b == ' ' || b == '\t' }

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// trimOWS removes leading and trailing SP / HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// nextElement splits the first element off a comma-separated list (RFC 9110
// 5.6.1), returning it with OWS trimmed, and the rest after the comma.
func nextElement(list []byte) (elem, rest []byte) {
	for i := 0; i < len(list); i++ {
		if list[i] == ',' {
			return trimOWS(list[:i]), list[i+1:]
		}
	}
	return trimOWS(list), nil
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if class[c]&cToken == 0 {
			return false
		}
	}
	return true
}

// field kinds: the fields the codec interprets or filters.
const (
	kOther uint8 = iota
	kHost
	kContentLength
	kTransferEncoding
	kConnection
	kKeepAlive
	kProxyConnection
	kTE
	kUpgrade
	kTrailer
	kExpect
)

// fieldKind classifies a field name (case-insensitively) without allocating.
func fieldKind(name []byte) uint8 {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return kTE
		}
	case 4:
		if equalFold(name, "host") {
			return kHost
		}
	case 6:
		if equalFold(name, "expect") {
			return kExpect
		}
	case 7:
		if equalFold(name, "upgrade") {
			return kUpgrade
		}
		if equalFold(name, "trailer") {
			return kTrailer
		}
	case 10:
		if equalFold(name, "connection") {
			return kConnection
		}
		if equalFold(name, "keep-alive") {
			return kKeepAlive
		}
	case 14:
		if equalFold(name, "content-length") {
			return kContentLength
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return kProxyConnection
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return kTransferEncoding
		}
	}
	return kOther
}
