package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// DefaultAddr is where bakery serve listens unless told otherwise:
// loopback only, so nothing but this machine can read the catalog.
const DefaultAddr = "127.0.0.1:8080"

// TokenEnv names the environment variable that holds the dashboard's
// token when --token is not given.
const TokenEnv = "BAKERY_TOKEN"

// cookieName is the cookie a browser keeps the token proof in after it
// opened the dashboard once with ?token=.
const cookieName = "bakery_token"

// IsLoopback reports whether host (a host without port) can only be
// reached from this machine: "localhost", 127.0.0.0/8 or ::1. An empty
// host (":8080") and 0.0.0.0 listen on every interface, and a name other
// than localhost may resolve anywhere: neither is loopback.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckAddr checks that the dashboard may listen on addr (HOST:PORT):
// on anything but loopback it must have a token, so that nobody else on
// the network reads the catalog. The error says what to do.
func CheckAddr(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: expected HOST:PORT, for example %s: %w", addr, DefaultAddr, err)
	}
	if token == "" && !IsLoopback(host) {
		return fmt.Errorf("--addr %s is not a loopback address, so the dashboard needs a token: "+
			"give one with --token or %s (every request must then send it), or listen on %s", addr, TokenEnv, DefaultAddr)
	}
	return nil
}

// cookieValue is what the token cookie holds: a digest of the token, so
// the token itself is not kept in the browser's cookie store.
func cookieValue(token string) string {
	sum := sha256.Sum256([]byte("bakery serve cookie\x00" + token))
	return hex.EncodeToString(sum[:])
}

// equal compares secrets in constant time.
func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authorize lets a request through when the server has no token, or when
// the request proves it knows it: an Authorization: Bearer header, the
// cookie set by an earlier ?token=, or ?token= itself. A page opened with
// ?token= sets the cookie and is redirected to the same address without
// the token (so it is not left in the history or in links); the API
// answers at once.
func (s *Server) authorize(next http.Handler) http.Handler {
	if s.token == "" {
		return next
	}
	want := cookieValue(s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(strings.TrimSpace(bearer), s.token) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(cookieName); err == nil && equal(c.Value, want) {
			next.ServeHTTP(w, r)
			return
		}
		q := r.URL.Query()
		if t := q.Get("token"); t != "" && equal(t, s.token) {
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: want, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			if strings.HasPrefix(r.URL.Path, "/api/") {
				next.ServeHTTP(w, r)
				return
			}
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="bakery"`)
		s.fail(w, r, http.StatusUnauthorized, "this dashboard needs its token: open it once with ?token=TOKEN "+
			"(a cookie keeps it), or send the header Authorization: Bearer TOKEN; the token is the one bakery serve was given (--token or "+TokenEnv+")")
	})
}
