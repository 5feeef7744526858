package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// memberEnv, when set, makes this program a member process (memberMain)
// instead of a soak: its value is the memberSpec as JSON.
const memberEnv = "TETHER_SOAK_MEMBER"

// memberSpec says where a member listens.
type memberSpec struct {
	Name string // in X-Member and the answer's body
	HTTP string // host:port of its HTTP/1.1 server
	Echo string // host:port of its tcp echo
}

// memberMain is a member process: HTTP that answers every request 200
// "ok NAME" (after reading its body) and a tcp echo that passes the
// client's half-close on. It prints "ready" once both listen and serves
// until it is killed.
func memberMain(specJSON string) int {
	var spec memberSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "member spec:", err)
		return 2
	}
	httpLn, err := net.Listen("tcp", spec.HTTP)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	echoLn, err := net.Listen("tcp", spec.Echo)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	answer := []byte("ok " + spec.Name + "\n")
	srv := &http.Server{ReadHeaderTimeout: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Member", spec.Name)
		_, _ = w.Write(answer)
	})}
	go serveEcho(echoLn)
	fmt.Println("ready")
	err = srv.Serve(httpLn)
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// serveEcho echoes each conn's bytes back; at the client's FIN it sends
// its own and closes.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go echoConn(c)
	}
}

func echoConn(c net.Conn) {
	defer c.Close()
	if _, err := io.Copy(c, c); err == nil {
		_ = c.(*net.TCPConn).CloseWrite()
	}
}

// memberProc is a member running as a process of its own, so that it can
// be killed (SIGKILL: the kernel ends its conns) and started again.
type memberProc struct {
	spec memberSpec
	log  string // its stderr
	cmd  *exec.Cmd
	done chan struct{}
}

// startMember runs this program as member spec and waits until it says
// ready.
func startMember(spec memberSpec, dir string) (*memberProc, error) {
	mp := &memberProc{spec: spec, log: filepath.Join(dir, spec.Name+".log")}
	return mp, mp.start()
}

func (mp *memberProc) start() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(mp.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	b, _ := json.Marshal(mp.spec)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), memberEnv+"="+string(b))
	cmd.Stderr = logf
	// Its own process group (a ^C to the soak does not reach it before the
	// soak is ready to stop it), and killed should the soak die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A pipe of our own rather than StdoutPipe: its reader reads on after
	// "ready" (the member writes nothing more) until the member exits,
	// without racing Wait, which would close StdoutPipe's reader.
	out, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		return fmt.Errorf("member %s: %w", mp.spec.Name, err)
	}
	mp.cmd, mp.done = cmd, make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
		out.Close()
	}()
	go func() { _ = cmd.Wait(); close(mp.done) }()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = errors.New("not ready after 10s")
	}
	if err != nil {
		mp.kill()
		b, _ := os.ReadFile(mp.log)
		return fmt.Errorf("member %s did not start: %v: %s", mp.spec.Name, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// kill ends the member with SIGKILL and waits for it (later calls do
// nothing).
func (mp *memberProc) kill() {
	if mp.cmd == nil {
		return
	}
	select {
	case <-mp.done:
		return
	default:
	}
	_ = mp.cmd.Process.Kill()
	<-mp.done
}
