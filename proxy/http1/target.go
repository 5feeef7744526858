package http1

import "bytes"

// checkTarget validates a request-target (RFC 9112 3.2) against the method
// and returns the offsets in t of the authority it carries (absolute-form
// and authority-form); a == b when there is none.
//
//   - every byte must be a VCHAR other than '#' (no fragment, no obs-text);
//   - origin-form ("/path?query"): percent-escapes in the path are well-formed;
//   - asterisk-form ("*"): OPTIONS only;
//   - authority-form ("host:port"): CONNECT only, and CONNECT only takes it;
//   - absolute-form: scheme http or https, "://", an authority without
//     userinfo and with a non-empty host, then an optional path and query.
func checkTarget(method, t []byte) (a, b int, err error) {
	if len(t) == 0 {
		return 0, 0, ErrInvalidTarget
	}
	for _, c := range t {
		if class[c]&cTarget == 0 {
			return 0, 0, ErrInvalidTarget
		}
	}
	if string(method) == "CONNECT" {
		if !validAuthority(t, true) {
			return 0, 0, ErrInvalidTarget
		}
		return 0, len(t), nil
	}
	switch {
	case t[0] == '/':
		if !validPath(t) {
			return 0, 0, ErrInvalidTarget
		}
		return 0, 0, nil
	case len(t) == 1 && t[0] == '*':
		if string(method) != "OPTIONS" {
			return 0, 0, ErrInvalidTarget
		}
		return 0, 0, nil
	}
	var skip int
	switch {
	case len(t) > 7 && equalFold(t[:7], "http://"):
		skip = 7
	case len(t) > 8 && equalFold(t[:8], "https://"):
		skip = 8
	default:
		return 0, 0, ErrInvalidTarget
	}
	rest := t[skip:]
	end := len(rest)
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	auth := rest[:end]
	if len(auth) == 0 || auth[0] == ':' || !validAuthority(auth, false) {
		return 0, 0, ErrInvalidTarget
	}
	if !validPath(rest[end:]) {
		return 0, 0, ErrInvalidTarget
	}
	return skip, skip + end, nil
}

// validPath checks the percent-escapes of the path part (before '?'); the
// query is passed on as it is.
func validPath(p []byte) bool {
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	return validPct(p)
}

func validPct(p []byte) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			if i+2 >= len(p) || class[p[i+1]]&cHex == 0 || class[p[i+2]]&cHex == 0 {
				return false
			}
			i += 2
		}
	}
	return true
}

// validHost checks a Host field value: empty, or an authority without
// userinfo (RFC 9110 7.2).
func validHost(h []byte) bool {
	if len(h) == 0 {
		return true
	}
	return h[0] != ':' && validAuthority(h, false)
}

// validAuthority checks host [":" port]: host is an IP-literal in brackets
// (hex digits, ':' and '.') or a reg-name / IPv4address (unreserved and
// sub-delims; percent-escapes are refused, as net/url does for ASCII); port is 1 to 5 digits, required when
// needPort. Userinfo ('@') is refused.
func validAuthority(a []byte, needPort bool) bool {
	if len(a) == 0 {
		return false
	}
	var host, port []byte
	hasPort := false
	if a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 2 {
			return false
		}
		for _, c := range a[1:end] {
			if class[c]&cHex == 0 && c != ':' && c != '.' {
				return false
			}
		}
		after := a[end+1:]
		if len(after) > 0 {
			if after[0] != ':' {
				return false
			}
			port, hasPort = after[1:], true
		}
	} else {
		host = a
		if i := bytes.IndexByte(a, ':'); i >= 0 {
			host, port, hasPort = a[:i], a[i+1:], true
		}
		if len(host) == 0 {
			return false
		}
		for _, c := range host {
			if class[c]&cRegName == 0 {
				return false
			}
		}
	}
	if hasPort {
		if len(port) == 0 || len(port) > 5 {
			return false
		}
		for _, c := range port {
			if class[c]&cDigit == 0 {
				return false
			}
		}
	}
	return hasPort || !needPort
}
