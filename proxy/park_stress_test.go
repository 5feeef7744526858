package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// Many relays and keepalive conns, each parking and waking at random
// moments (quiet spells around the park delay, bursts, FINs, closes) while
// every byte is checked: no message lost, duplicated or misrouted, and
// everything ends. Bounded: a fixed number of steps per conn.
func TestParkingUnderChurn(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, echo)
		p := startProxy(t, tcpConfig("", "", "", be.addr()))
		churn(t, 40, func(t *testing.T, id int, rng *rand.Rand) error {
			c, err := net.DialTimeout("tcp", p.addr("vs"), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			for step := range 4 {
				if err := quiet(rng, c); err != nil {
					return err
				}
				msg := fmt.Sprintf("conn %d step %d %s", id, step, string(make([]byte, rng.IntN(3000))))
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, msg); err != nil {
					return err
				}
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(c, buf); err != nil {
					return fmt.Errorf("step %d: %w", step, err)
				}
				if string(buf) != msg {
					return fmt.Errorf("step %d: echo mismatch", step)
				}
			}
			if rng.IntN(2) == 0 { // a clean half-close: the echo member closes after it
				_ = c.(*net.TCPConn).CloseWrite()
				if b, err := readAll(c); err != nil || len(b) != 0 {
					return fmt.Errorf("after FIN: %q %v", b, err)
				}
			}
			return nil
		})
		waitFor(t, 5*time.Second, "every relay ended", func() bool {
			st := p.srv.VirtualServer("vs").Stats()
			return st.Active == 0 && st.Parked == 0
		})
		if st := p.srv.VirtualServer("vs").Stats(); st.Parks < 20 {
			t.Fatalf("only %d parks: the churn did not exercise parking", st.Parks)
		}
	})
	t.Run("tls tcp", func(t *testing.T) {
		t.Parallel()
		pki := testpki.New(t)
		leaf := pki.Issue(t, "a", "127.0.0.1", testpki.Options{})
		be := startBackend(t, echo)
		p := startProxy(t, tcpConfig("", tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.addr()))
		churn(t, 20, func(t *testing.T, id int, rng *rand.Rand) error {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: pki.ClientConfig("127.0.0.1")}
			c, err := d.Dial("tcp", p.addr("vs"))
			if err != nil {
				return err
			}
			defer c.Close()
			for step := range 4 {
				if err := quiet(rng, c); err != nil {
					return err
				}
				msg := fmt.Sprintf("conn %d step %d %s", id, step, string(make([]byte, rng.IntN(40000))))
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				errc := make(chan error, 1)
				go func() { _, err := io.WriteString(c, msg); errc <- err }()
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(c, buf); err != nil {
					return fmt.Errorf("step %d: %w", step, err)
				}
				if err := <-errc; err != nil {
					return err
				}
				if string(buf) != msg {
					return fmt.Errorf("step %d: echo mismatch", step)
				}
			}
			return nil
		})
		waitFor(t, 5*time.Second, "every relay ended", func() bool {
			st := p.srv.VirtualServer("vs").Stats()
			return st.Active == 0 && st.Parked == 0
		})
		if st := p.srv.VirtualServer("vs").Stats(); st.Parks < 10 {
			t.Fatalf("only %d parks: the churn did not exercise parking", st.Parks)
		}
	})
	t.Run("http", func(t *testing.T) {
		t.Parallel()
		be := startHTTPBackend(t, echoPath, nil)
		p := startProxy(t, httpConfig("", "", be.addr()))
		churn(t, 40, func(t *testing.T, id int, rng *rand.Rand) error {
			c, err := net.DialTimeout("tcp", p.addr("vs"), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for step := range 4 {
				if err := quiet(rng, c); err != nil {
					return err
				}
				path := fmt.Sprintf("/conn/%d/step/%d", id, step)
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
					return err
				}
				resp, err := readResponse(br)
				if err != nil {
					return fmt.Errorf("step %d: %w", step, err)
				}
				if resp != path {
					return fmt.Errorf("step %d: got %q for %s", step, resp, path)
				}
			}
			return nil
		})
		waitFor(t, 5*time.Second, "every conn ended", func() bool {
			st := p.srv.VirtualServer("vs").Stats()
			return st.Active == 0 && st.Parked == 0
		})
		if st := p.srv.VirtualServer("vs").Stats(); st.Parks < 40 {
			t.Fatalf("only %d parks: the churn did not exercise parking", st.Parks)
		}
	})
}

// churn runs n clients at once, each with its own random source.
func churn(t *testing.T, n int, client func(*testing.T, int, *rand.Rand) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := client(t, i, rand.New(rand.NewPCG(uint64(i), 7))); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// quiet waits a random spell: none, a few ms, or around the park delays
// (10 ms for http, 1 s for tcp), so wakes race with parks.
func quiet(rng *rand.Rand, _ net.Conn) error {
	switch rng.IntN(4) {
	case 0:
	case 1:
		time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
	case 2:
		time.Sleep(time.Duration(900+rng.IntN(250)) * time.Millisecond)
	default:
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	}
	return nil
}

// readResponse reads one response with a Content-Length body (the echo
// member's) and returns the body.
func readResponse(br *bufio.Reader) (string, error) {
	var length int
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if line == "\r\n" {
			break
		}
		if _, err := fmt.Sscanf(line, "Content-Length: %d", &length); err == nil {
			continue
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", err
	}
	return string(body), nil
}
