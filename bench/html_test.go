package bench

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// The report is one self-contained page: it parses, has no script and no
// URL pointing anywhere, and holds the four charts with drawn paths; when
// Chromium is there, it renders them.
func TestHTMLReportIsSelfContainedAndRenders(t *testing.T) {
	s := (&testServer{}).start(t)
	var rs []*Result
	for _, conn := range []string{ConnShort, ConnLong} {
		rs = append(rs, run(t, Options{Target: s.url(), Conn: conn, Label: conn, Concurrency: 4, Duration: 300 * time.Millisecond}))
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, "short vs long <test>", rs...); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	urlRE := regexp.MustCompile(`(?i)(https?:)?//|url\(`)
	var svgs, series, bars int
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "link", "img", "iframe", "object", "embed":
				t.Errorf("<%s> in a self-contained report", n.Data)
			case "svg":
				svgs++
			case "path":
				d, class := attr(n, "d"), attr(n, "class")
				if len(d) < 4 || !strings.HasPrefix(d, "M") {
					t.Errorf("path with empty d %q", d)
				}
				switch class {
				case "series":
					series++
				case "bar":
					bars++
				}
			case "style":
				if n.FirstChild != nil && urlRE.MatchString(n.FirstChild.Data) {
					t.Errorf("style refers to a URL: %q", urlRE.FindString(n.FirstChild.Data))
				}
			}
			for _, a := range n.Attr {
				if a.Key == "src" || a.Key == "href" || a.Key == "xlink:href" || a.Key == "style" {
					if urlRE.MatchString(a.Val) {
						t.Errorf("<%s %s=%q>: a URL", n.Data, a.Key, a.Val)
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Errorf("the page names a URL")
	}
	if svgs != 4 || series != 4 || bars != 2*4 {
		t.Errorf("svg %d, series paths %d, bars %d; want 4 charts, 2 results x 2 line charts, 2 x 4 bars", svgs, series, bars)
	}
	if !strings.Contains(page, "short vs long &lt;test&gt;") {
		t.Errorf("title not escaped")
	}

	t.Run("chromium", func(t *testing.T) {
		chromium := socktest.Need(t, "chromium", "chromium")
		dir := t.TempDir()
		file := filepath.Join(dir, "report.html")
		if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		browse := func(extra ...string) []byte {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
				"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
				"--user-data-dir=" + t.TempDir()}, extra...)
			cmd := exec.CommandContext(ctx, chromium, append(args, "file://"+file)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
			}
			return out
		}
		dom := string(browse("--dump-dom"))
		if n := strings.Count(dom, "<svg"); n != 4 {
			t.Errorf("rendered DOM has %d <svg>, want 4", n)
		}
		if n := len(regexp.MustCompile(`<path class="series" d="M[0-9.]+ [0-9.]+ L`).FindAllString(dom, -1)); n != 4 {
			t.Errorf("rendered DOM has %d drawn series paths, want 4", n)
		}
		shot := filepath.Join(dir, "shot.png")
		browse("--screenshot="+shot, "--window-size=1200,900", "--hide-scrollbars")
		f, err := os.Open(shot)
		if err != nil {
			t.Fatalf("no screenshot: %v", err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if c := colours(img); c < 5 {
			t.Errorf("screenshot has %d colours: blank page", c)
		}
		// Each result's colour is on screen (the drawn lines and bars).
		for i := range rs {
			if !hasColour(img, palette[i]) {
				t.Errorf("screenshot lacks series colour %s", palette[i])
			}
		}
	})
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func colours(img image.Image) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	return len(seen)
}

func hasColour(img image.Image, hex string) bool {
	var want [3]uint32
	for i := range 3 {
		var v uint32
		for _, c := range hex[1+2*i : 3+2*i] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= uint32(c - '0')
			default:
				v |= uint32(c-'a') + 10
			}
		}
		want[i] = v
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == want[0] && g>>8 == want[1] && bl>>8 == want[2] {
				return true
			}
		}
	}
	return false
}
