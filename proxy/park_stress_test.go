package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// Many relays and keepalive conns, each parking and waking at random
// moments (quiet spells around the park delays, bursts, FINs, closes) while
// every byte is checked: no message lost, duplicated or misrouted, and
// everything ends. Bounded: a fixed number of steps per conn.
func TestParkingUnderChurn(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		be := socktest.Start(t, socktest.Echo)
		p := startProxy(t, tcpConfig("", "", "", be.Addr()))
		churn(t, p, 40, 20, func(id int, rng *rand.Rand) error {
			c, err := net.DialTimeout("tcp", p.addr("vs"), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := echoSteps(c, id, rng, 3000); err != nil {
				return err
			}
			if rng.IntN(2) == 0 { // a clean half-close: the echo member closes after it
				_ = c.(*net.TCPConn).CloseWrite()
				if b, err := readAll(c); err != nil || len(b) != 0 {
					return fmt.Errorf("after FIN: %q %v", b, err)
				}
			}
			return nil
		})
	})
	t.Run("tls tcp", func(t *testing.T) {
		t.Parallel()
		pki := testpki.New(t)
		leaf := pki.Issue(t, "a", "127.0.0.1", testpki.Options{})
		be := socktest.Start(t, socktest.Echo)
		p := startProxy(t, tcpConfig("", tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
		churn(t, p, 20, 10, func(id int, rng *rand.Rand) error {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: pki.ClientConfig("127.0.0.1")}
			c, err := d.Dial("tcp", p.addr("vs"))
			if err != nil {
				return err
			}
			defer c.Close()
			return echoSteps(c, id, rng, 40000) // records up to 16 KiB, several per message
		})
	})
	t.Run("http", func(t *testing.T) {
		t.Parallel()
		be := startHTTPBackend(t, echoPath, nil)
		p := startProxy(t, httpConfig("", "", be.Addr()))
		churn(t, p, 40, 40, func(id int, rng *rand.Rand) error {
			c, err := net.DialTimeout("tcp", p.addr("vs"), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for step := range 4 {
				quiet(rng)
				path := fmt.Sprintf("/conn/%d/step/%d", id, step)
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
					return err
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return fmt.Errorf("step %d: %w", step, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(body) != path {
					return fmt.Errorf("step %d: got %q %v for %s", step, body, err, path)
				}
			}
			return nil
		})
	})
}

// churn runs n clients at once, each with its own random source, then
// checks that every conn ended and that at least minParks parks happened
// (the churn reached the parker).
func churn(t *testing.T, p *proxyUnderTest, n int, minParks uint64, client func(int, *rand.Rand) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := client(i, rand.New(rand.NewPCG(uint64(i), 7))); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	vs := p.srv.VirtualServer("vs")
	socktest.WaitFor(t, 5*time.Second, "every conn ended", func() bool {
		st := vs.Stats()
		return st.Active == 0 && st.Parked == 0
	})
	if st := vs.Stats(); st.Parks < minParks {
		t.Fatalf("only %d parks: the churn did not exercise parking", st.Parks)
	}
}

// echoSteps sends four messages of up to maxLen bytes through an echo
// member, each after a random quiet spell, and checks each echo. The write
// runs beside the read: a large message does not fit the socket buffers.
func echoSteps(c net.Conn, id int, rng *rand.Rand, maxLen int) error {
	for step := range 4 {
		quiet(rng)
		msg := fmt.Sprintf("conn %d step %d %s", id, step, make([]byte, rng.IntN(maxLen)))
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		werr := make(chan error, 1)
		go func() { _, err := io.WriteString(c, msg); werr <- err }()
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		if err := <-werr; err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("step %d: echo mismatch", step)
		}
	}
	return nil
}

// quiet waits a random spell: none, a few ms, or around the park delays
// (10 ms for http, 1 s for tcp), so wakes race with parks. The spells are
// the behaviour under test, not a wait for a condition.
func quiet(rng *rand.Rand) {
	switch rng.IntN(4) {
	case 0:
	case 1:
		time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
	case 2:
		time.Sleep(time.Duration(900+rng.IntN(250)) * time.Millisecond)
	default:
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	}
}
