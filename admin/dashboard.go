package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"path"
	"strings"
	"time"
)

// The dashboard: one page at "/" and its assets under "/ui/", embedded in
// the binary (plain JavaScript, no build step; uPlot 1.6.32 vendored from
// npm under ui/vendor/uplot with its LICENSE). The page loads nothing from
// elsewhere: its Content-Security-Policy allows only its own origin.
//
// The page reads /api/v1/virtual-servers and /api/v1/pools every 2 s and
// posts member state changes and reloads (with "X-Tether: 1"), through the
// same API any client uses.
//
// Token: the page shell and its assets hold no data, so they are served
// without the bearer token (a browser cannot attach one to a page load);
// every API call still needs it. With a token configured the page's first
// API call answers 401, the page asks for the token once, keeps it in
// sessionStorage (gone when the tab closes; never a cookie, so no other
// site's request carries it) and sends it as "Authorization: Bearer".
// Without a token (the loopback default) the page just works.

//go:embed ui/index.html ui/dashboard.js ui/dashboard.css ui/favicon.svg
//go:embed ui/vendor/uplot/uPlot.iife.min.js ui/vendor/uplot/uPlot.min.css ui/vendor/uplot/LICENSE
var uiFS embed.FS

// dashboardCSP forbids every load from another origin, inline scripts and
// styles, plugins, framing and form posts.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiContentTypes are the types of the assets, by extension; a file with
// another extension is not served. (Not mime.TypeByExtension: it reads the
// machine's mime.types.)
var uiContentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	"":      "text/plain; charset=utf-8", // LICENSE
}

// uiAsset is one embedded file, ready to serve.
type uiAsset struct {
	body        []byte
	contentType string
	etag        string
}

// loadUI reads an embedded file; the names are fixed by go:embed, so a
// missing one is a build mistake.
func loadUI(name string) uiAsset {
	b, err := uiFS.ReadFile(name)
	if err != nil {
		panic("admin: embedded dashboard file missing: " + name)
	}
	ct, ok := uiContentTypes[path.Ext(name)]
	if !ok {
		panic("admin: embedded dashboard file of unknown type: " + name)
	}
	sum := sha256.Sum256(b)
	return uiAsset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// dashboardRoutes adds GET / (the page) and GET /ui/{file...} (its assets);
// any other method on them answers 405 in JSON, an unknown asset 404.
func (a *Admin) dashboardRoutes(mux *http.ServeMux) {
	page := loadUI("ui/index.html")
	assets := map[string]uiAsset{}
	for _, name := range []string{"dashboard.js", "dashboard.css", "favicon.svg",
		"vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css", "vendor/uplot/LICENSE"} {
		assets[name] = loadUI("ui/" + name)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		serveUI(w, r, page)
	})
	mux.HandleFunc("/{$}", methodNotAllowed("GET"))
	mux.HandleFunc("GET /ui/{file...}", func(w http.ResponseWriter, r *http.Request) {
		asset, ok := assets[r.PathValue("file")]
		if !ok {
			writeError(w, http.StatusNotFound, "no such file: "+r.URL.Path)
			return
		}
		serveUI(w, r, asset)
	})
	mux.HandleFunc("/ui/", methodNotAllowed("GET"))
}

// serveUI writes an asset with its type, the CSP and an ETag (the embedded
// files change only with the binary, so a revalidation is cheap).
func serveUI(w http.ResponseWriter, r *http.Request, f uiAsset) {
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// dashboardShell reports whether r asks for the page or one of its assets,
// which the guard serves without the token (see the comment at the top).
func dashboardShell(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/ui/")
}
